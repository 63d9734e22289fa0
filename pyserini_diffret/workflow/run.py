"""End to end: encode, index, search (sparse, dense single, dense multi, hybrid, BM25, hybrid+bm25), evaluate.

    python -m pyserini_diffret.run --sample                                  # -> runs/demo/sample
    python -m pyserini_diffret.run --data ../shared/data/scifact [--split test]  # -> runs/demo/scifact
    python -m pyserini_diffret.run --output OUT --corpus C --queries Q --qrels R [--model M]

Without ``--output`` each collection gets its own folder, ``runs/demo/<name>`` (``sample``, the name of the
``--data`` folder, or of the corpus). A second run on the same folder reuses the encoding and both Lucene
indexes (impact, BM25); ``--overwrite`` encodes and indexes again.

Inputs: BEIR layout (``corpus.jsonl`` with ``_id``/``title``/``text``, ``queries.jsonl``, ``qrels/test.tsv``)
or Pyserini layouts (``id``/``contents`` JSON lines, topics TSV ``qid<TAB>text``, TREC qrels). Only the
queries that have judgements are searched; queries with empty text are dropped (with a warning that counts
them: Pyserini's topic reader cannot read them back). No document, or no usable query, is an error
before anything is indexed. ``--skip-invalid`` skips (and counts) malformed corpus and query records
instead of stopping at the first. Steps, all in one process (the model is loaded once, queries
are encoded in batches):

1. ``OUT/encoded``: one pass over the corpus (impact vectors, dense FAISS folder, slot store; resumable).
2. ``OUT/indexes/lucene-impact``: ``python -m pyserini.index.lucene --collection JsonVectorCollection
   --impact --pretokenized`` (documents whose impact vector is empty are not indexed by Lucene; they are
   counted, and are in the dense indexes).
3. ``OUT/indexes/lucene-bm25``: Pyserini's BM25 index of the same documents, built as Pyserini's BEIR "flat"
   indexes are (``python -m pyserini.index.lucene --collection JsonCollection --generator
   DefaultLuceneDocumentGenerator --storePositions --storeDocvectors --storeRaw``; ``contents`` = title, a newline,
   text: what Anserini's ``BeirFlatCollection`` indexes; Pyserini layouts: ``contents`` as given). Documents
   whose text is empty are not indexed (counted). Reused on a rerun, like the impact index.
4. ``OUT/runs/*.trec``: sparse (``LuceneImpactSearcher``, ``min_idf=-1``), dense (``FaissSearcher``), dense-multi
   (MaxSim), hybrid (paper's fusion of dense + sparse), hybrid-multi (dense-multi + sparse), bm25
   (``LuceneSearcher``, BM25 k1=0.9 b=0.4: Pyserini's defaults, as in its BEIR regressions) and hybrid+bm25 (the
   paper's min-max fusion of dense, sparse and bm25 with ``--bm25-weights``, default ``BM25_WEIGHTS``, chosen on
   SciFact train queries: BENCHMARKS.md).
5. ``OUT/metrics.md``, ``OUT/metrics.json``: nDCG@10, MRR@10, R@100, R@1000 by Pyserini's trec_eval.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pyserini_diffret.workflow import fusion, trec
from pyserini_diffret.workflow.collection import (
    CorpusReader, InputError, TopicStats, corpus_files, dropped_queries, find_beir_files, read_qrels, read_topics,
    write_topics_tsv, write_trec_qrels,
)
from pyserini_diffret.workflow.encode import EncodeResult, accounting_line, encode_corpus
from pyserini_diffret.workflow.evaluate import METRICS, evaluate_runs, markdown_table

RUN_NAMES = ("sparse", "dense", "dense-multi", "hybrid", "hybrid-multi", "bm25", "hybrid+bm25")
# hybrid+bm25 = w_dense * minmax(dense) + w_sparse * minmax(sparse) + w_bm25 * minmax(bm25): the weights with the
# best nDCG@10 on the 809 SciFact *train* queries over a grid of steps of 0.1 summing to 1, the embedded default
# model `diffret` (BENCHMARKS.md, section 7); never chosen on SciFact test or Cranfield.
BM25_WEIGHTS = (0.7, 0.1, 0.2)  # dense, sparse, bm25: nDCG@10 0.8201 there (equal weights 1/3 each: 0.7821)
BM25_K1, BM25_B = 0.9, 0.4  # Pyserini's LuceneSearcher defaults (its BEIR "flat" regressions use them)
BM25_FORMAT = 1  # bump when the BM25 collection written for Lucene changes
DEFAULT_ROOT = Path("runs") / "demo"
SEARCH_CHUNK = 64  # queries per search call (the progress bar moves once per call)


@dataclass
class Inputs:
    corpus: Path
    queries: Path
    qrels: Path
    label: str


def sample_folder() -> Path:
    return Path(str(resources.files("pyserini_diffret").joinpath("resources/sample")))


def resolve_inputs(sample: bool = False, data: str | None = None, split: str = "test", corpus: str | None = None,
                   queries: str | None = None, qrels: str | None = None) -> Inputs:
    chosen = sum(bool(x) for x in (sample, data, corpus or queries or qrels))
    if chosen != 1:
        raise ValueError("give exactly one of --sample, --data BEIR_FOLDER, or --corpus/--queries/--qrels")
    if sample:
        c, q, r = find_beir_files(sample_folder(), "test")
        return Inputs(c, q, r, "sample")
    if data:
        c, q, r = find_beir_files(data, split)
        return Inputs(c, q, r, Path(data).resolve().name)
    missing = [flag for flag, value in (("--corpus", corpus), ("--queries", queries), ("--qrels", qrels)) if not value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    path = Path(corpus).resolve()
    label = path.name.split(".")[0] if path.is_file() else path.name
    if label in ("corpus", "collection", "docs", "documents") and path.is_file():
        label = path.parent.name  # a generic file name: the folder says more
    return Inputs(Path(corpus), Path(queries), Path(qrels), label)


def default_output(inputs: Inputs) -> Path:
    """``runs/demo/<label>``: one folder per collection, so that runs on different collections never meet."""
    return DEFAULT_ROOT / (inputs.label or "collection")


class _Precomputed:
    """A query encoder whose answers were computed in one batch beforehand (text -> representation)."""

    diffret_impact = True

    def __init__(self, table: dict) -> None:
        self.table = table

    def encode(self, text: str):
        return self.table[text]


def _hits_to_run(results: dict, qids: Sequence[str]) -> fusion.Run:
    return {qid: {hit.docid: float(hit.score) for hit in results.get(qid, [])} for qid in qids}


def build_lucene_index(input_dir: Path, index_dir: Path, threads: int, log: Callable[[str], None]) -> dict[str, int]:
    """``python -m pyserini.index.lucene`` (through our wrapper: Java 21+ without the start-up hook)."""
    if index_dir.exists():
        shutil.rmtree(index_dir)
    command = [sys.executable, "-m", "pyserini_diffret.index_lucene", "--collection", "JsonVectorCollection",
               "--input", str(input_dir), "--index", str(index_dir), "--generator", "DefaultLuceneDocumentGenerator",
               "--impact", "--pretokenized", "--threads", str(threads)]
    return _index(command, "impact", log)


def bm25_documents(corpus: str | os.PathLike, target: Path, skip_invalid: bool = False) -> dict[str, int]:
    """The corpus as Pyserini's ``JsonCollection`` (``{"id", "contents"}`` lines), read by the reader the encoding
    uses (same documents, same ids, same ``--skip-invalid``): ``contents`` = title, a newline, text, as Anserini's
    ``BeirFlatCollection`` builds it for Pyserini's BEIR "flat" indexes, or the text alone without a title."""
    reader = CorpusReader(corpus, skip_invalid=skip_invalid, max_chars=None)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "w", encoding="utf-8", newline="\n") as f:
        for doc, _ in reader.read():
            if doc is None:
                continue
            contents = f"{doc.title}\n{doc.text}" if doc.title else doc.text
            f.write(json.dumps({"id": doc.docid, "contents": contents}, ensure_ascii=False) + "\n")
            written += 1
    return {"written": written, "skipped": reader.stats["skipped"]}


def build_bm25_index(corpus: str | os.PathLike, index_dir: Path, threads: int, skip_invalid: bool,
                     log: Callable[[str], None]) -> dict[str, int]:
    """Pyserini's BM25 index of ``corpus`` (``python -m pyserini.index.lucene --collection JsonCollection``)."""
    if index_dir.exists():
        shutil.rmtree(index_dir)
    staging = index_dir.with_name(index_dir.name + ".collection")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        documents = bm25_documents(corpus, staging / "docs.jsonl", skip_invalid)
        command = [sys.executable, "-m", "pyserini_diffret.index_lucene", "--collection", "JsonCollection",
                   "--input", str(staging), "--index", str(index_dir), "--generator", "DefaultLuceneDocumentGenerator",
                   "--threads", str(threads), "--storePositions", "--storeDocvectors", "--storeRaw"]
        counts = _index(command, "BM25", log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts["documents"] = documents["written"]
    return counts


def _index(command: list[str], what: str, log: Callable[[str], None]) -> dict[str, int]:
    log("$ python " + " ".join(command[1:]) + "  (= python -m pyserini.index.lucene with Java 21+ set up)")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Lucene indexing ({what}) failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    counts = {}
    for name in ("indexed", "empty", "skipped", "errors"):
        match = re.search(rf"\b{name}:\s+([\d,]+)", proc.stdout + proc.stderr)
        counts[name] = int(match.group(1).replace(",", "")) if match else -1
    return counts


def _corpus_digest(corpus: str | os.PathLike, skip_invalid: bool) -> str:
    """What the BM25 index depends on: the corpus files (path, size, mtime), --skip-invalid, the format."""
    files = [[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in corpus_files(corpus)]
    settings = {"format": BM25_FORMAT, "corpus": files, "skip_invalid": skip_invalid}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _reused_or_built(index_dir: Path, digest: str, overwrite: bool, build: Callable[[], dict[str, int]],
                     what: str, log: Callable[[str], None]) -> dict[str, int]:
    """The counts of an index kept from an earlier run built from ``digest`` (its ``<index>.json`` marker
    says so), or of one built now; the marker goes only after a complete, checked build."""
    marker = index_dir.with_name(index_dir.name + ".json")
    previous = json.loads(marker.read_text()) if marker.is_file() else {}
    if not overwrite and previous.get("settings_digest") == digest and index_dir.is_dir():
        log(f"{what} up to date: {index_dir}")
        return previous["counts"]
    if marker.exists():
        marker.unlink()
    counts = build()
    marker.write_text(json.dumps({"settings_digest": digest, "counts": counts}, indent=1) + "\n")
    return counts


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, unit="query", desc=desc, file=sys.stderr, disable=not enabled, mininterval=1.0,
                dynamic_ncols=True, leave=False)


def _in_chunks(search: Callable[[int, int], list], total: int, desc: str, progress: bool) -> list:
    """``search(start, end)`` over ``[0, total)`` in chunks of ``SEARCH_CHUNK``, with a progress bar."""
    found: list = []
    with _progress_bar(total, desc, progress) as bar:
        for start in range(0, total, SEARCH_CHUNK):
            end = min(start + SEARCH_CHUNK, total)
            found.extend(search(start, end))
            bar.update(end - start)
    return found


def _count_hits(run: fusion.Run) -> int:
    return sum(len(docs) for docs in run.values())


def run_pipeline(inputs: Inputs, output: str | os.PathLike | None = None, model_name: str = "diffret",
                 device: str = "cpu", batch_size: int = 32, hits: int = 1000, alpha: float = 0.5,
                 candidates: int = 1000, threads: int | None = None, overwrite: bool = False, progress: bool = True,
                 max_length: int | None = None, log: Callable[[str], None] = print,
                 skip_invalid: bool = False, bm25_weights: Sequence[float] = BM25_WEIGHTS) -> dict:
    bm25_weights = fusion.check_weights(bm25_weights, 3, ("dense", "sparse", "bm25"))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha {alpha:g} must be in [0, 1] (the hybrid weights are alpha and 1 - alpha)")
    output = Path(output) if output is not None else default_output(inputs)
    threads = threads or min(os.cpu_count() or 1, 8)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    @contextmanager
    def stage(starting: str) -> Iterator[list[str]]:
        """``starting ...``, then ``  done in X s: <what the block appended>``."""
        log(f"{starting} ...")
        began, notes = time.perf_counter(), []
        yield notes
        log(f"  done in {time.perf_counter() - began:.1f} s" + (f": {'; '.join(notes)}" if notes else ""))

    # 1. inputs (all checked before anything is written, loaded or started)
    stats = TopicStats()
    topics = read_topics(inputs.queries, skip_invalid=skip_invalid, stats=stats)
    qrels = read_qrels(inputs.qrels)
    for line in dropped_queries(inputs.queries, stats, qrels):
        log(line)
    judged = [qid for qid in topics if qid in qrels]
    unknown = [qid for qid in qrels if qid not in topics and qid not in stats.empty]
    if not judged:
        if not topics:
            raise InputError(inputs.queries, None, f"no query with text ({len(stats.empty)} empty, {stats.skipped} "
                                                   "invalid skipped); nothing to search")
        raise InputError(inputs.queries, None, f"no query with text among the {len(qrels)} judged queries of "
                                               f"{inputs.qrels}; nothing to search")
    if unknown:
        log(f"warning: {len(unknown)} judged queries have no text in {inputs.queries}; they score 0")
    output.mkdir(parents=True, exist_ok=True)
    log(f"output: {output}")
    topics_path = write_topics_tsv({qid: topics[qid] for qid in judged}, output / "topics.tsv")
    qrels_path = write_trec_qrels(qrels, output / "qrels.txt")
    log(f"inputs: corpus {inputs.corpus}, {len(judged)} judged queries of {len(topics)} ({inputs.queries}), "
        f"qrels {inputs.qrels}")

    # 2. model, encoding
    from pyserini_diffret.shared import shared_model  # noqa: PLC0415

    model = shared_model(model_name, device, batch_size=batch_size)
    if max_length is not None:
        model.set_lengths(document=max_length)
    log(f"model: {model.source} ({model.config.backbone}, hidden {model.hidden_size}, K_q {model.k_query}, "
        f"K_p {model.k_doc}, document {model.prompts.max_text_length('document', model.k_doc)} tokens, device {device})")
    lap("load model")
    encoded = output / "encoded"
    log(f"encoding {inputs.corpus} -> {encoded} ...")
    try:
        result: EncodeResult = encode_corpus(inputs.corpus, encoded, model, batch_size=batch_size, progress=progress,
                                             overwrite=overwrite, device=device, skip_invalid=skip_invalid, log=log)
    except ValueError as error:
        if "--overwrite" not in str(error) or isinstance(error, InputError):
            raise
        raise ValueError(f"{error} (here: --output FOLDER or --overwrite; with make demo: DEMO_OUTPUT=FOLDER or "
                         "OVERWRITE=1)") from None
    lap("encode corpus")
    accounting = result.accounting
    if accounting.get("written", 0) == 0:  # a folder finished by an earlier version
        raise InputError(inputs.corpus, None, f"no documents in {encoded}; nothing was encoded")
    if not result.already_complete:  # (a complete folder was reported by encode_corpus)
        log(f"  done in {timings['encode corpus']:.1f} s: {result.encoded_now} documents encoded "
            f"({accounting['written']} in {encoded})")

    # 3. Lucene impact index (rebuilt unless it was built from this very encoding)
    index_dir = output / "indexes" / "lucene-impact"

    def build_impact_index() -> dict[str, int]:
        with stage(f"indexing {accounting['written']} impact vectors with Lucene ({threads} threads) -> {index_dir}") \
                as notes:
            counts = build_lucene_index(encoded / "impact", index_dir, threads, log)
            notes.append(f"{counts.get('indexed')} documents indexed, {counts.get('empty')} empty impact vectors "
                         "left out (they are in the dense indexes)")
        if counts.get("indexed", -1) + counts.get("empty", 0) != accounting["written"]:
            raise RuntimeError(f"Lucene indexed {counts} but {accounting['written']} documents were written")
        if counts.get("empty", 0) != accounting["empty_sparse"]:
            raise RuntimeError(f"Lucene found {counts.get('empty')} empty documents, the encoder wrote "
                               f"{accounting['empty_sparse']} empty impact vectors")
        return counts

    lucene = _reused_or_built(index_dir, result.manifest["settings_digest"], overwrite, build_impact_index,
                              "Lucene index", log)
    lap("index (Lucene impact)")

    # 3b. Lucene BM25 index of the same documents (rebuilt unless built from these very corpus files)
    bm25_dir = output / "indexes" / "lucene-bm25"

    def build_bm25() -> dict[str, int]:
        with stage(f"indexing {accounting['written']} documents for BM25 with Lucene ({threads} threads) -> "
                   f"{bm25_dir}") as notes:
            counts = build_bm25_index(inputs.corpus, bm25_dir, threads, skip_invalid, log)
            notes.append(f"{counts.get('indexed')} documents indexed, {counts.get('empty')} with no text left out")
        if counts["documents"] != accounting["written"]:
            raise RuntimeError(f"{counts['documents']} documents were written for BM25 but "
                               f"{accounting['written']} were encoded")
        if counts.get("indexed", -1) + max(counts.get("empty", 0), 0) != accounting["written"]:
            raise RuntimeError(f"Lucene (BM25) indexed {counts} but {accounting['written']} documents were encoded")
        return counts

    bm25_counts = _reused_or_built(bm25_dir, _corpus_digest(inputs.corpus, skip_invalid), overwrite, build_bm25,
                                   "BM25 index", log)
    lap("index (Lucene BM25)")

    # 4. queries, once, in batches
    texts = [topics[qid] for qid in judged]
    with stage(f"encoding {len(texts)} queries"):
        reps = model.encode_queries(texts)
    lap("encode queries")

    # 5. searches
    with stage("loading Pyserini's searchers (starts Java)"):
        from pyserini_diffret.integration import setup  # noqa: PLC0415

        setup()  # Java 21+ and the offline guard before Pyserini loads
        from pyserini.search.faiss import FaissSearcher  # noqa: PLC0415
        from pyserini.search.lucene import LuceneImpactSearcher, LuceneSearcher  # noqa: PLC0415

        from pyserini_diffret.workflow.multivector import MultiVectorSearcher  # noqa: PLC0415
    lap("load Pyserini (Java)")

    runs: dict[str, fusion.Run] = {}
    n = len(judged)
    with stage(f"searching sparse (Lucene impact, {index_dir}): {n} queries, top {hits}") as notes:
        impact = _Precomputed(dict(zip(texts, reps.impact)))
        # Absolute: the JVM resolves relative paths against the directory it started in, not the current one.
        searcher = LuceneImpactSearcher(str(Path(index_dir).resolve()), impact, min_idf=-1)
        nonempty = [i for i, ids in enumerate(reps.term_ids) if len(ids)]
        # a query with an empty impact vector has no sparse hits
        found = _in_chunks(lambda a, b: list(searcher.batch_search(
            [texts[i] for i in nonempty[a:b]], [judged[i] for i in nonempty[a:b]], hits, threads).items()),
            len(nonempty), "sparse", progress)
        runs["sparse"] = _hits_to_run(dict(found), judged)
        notes.append(f"{_count_hits(runs['sparse'])} hits" + (f" ({n - len(nonempty)} queries with an empty "
                                                               "impact vector have none)" if len(nonempty) < n else ""))
    lap("search sparse")
    with stage(f"searching dense (FAISS, {encoded / 'dense'}): {n} queries, top {hits}") as notes:
        dense = FaissSearcher(str(encoded / "dense"), None)
        found = _in_chunks(lambda a, b: list(dense.batch_search(reps.dense[a:b], judged[a:b], hits, threads).items()),
                           n, "dense", progress)
        runs["dense"] = _hits_to_run(dict(found), judged)
        notes.append(f"{_count_hits(runs['dense'])} hits")
    lap("search dense")
    with stage(f"searching dense-multi (MaxSim over slot vectors, {encoded / 'slots'}): {n} queries, top {hits}") \
            as notes:
        multi = MultiVectorSearcher(encoded / "slots", candidates=candidates, threads=threads)
        ranked = _in_chunks(lambda a, b: multi.batch_search_slots(reps.slots[a:b], hits), n, "dense-multi", progress)
        runs["dense-multi"] = dict(zip(judged, ({hit.docid: hit.score for hit in hits_} for hits_ in ranked)))
        notes.append(f"{_count_hits(runs['dense-multi'])} hits")
    lap("search dense-multi")
    with stage(f"searching bm25 (Lucene BM25 k1={BM25_K1} b={BM25_B}, {bm25_dir}): {n} queries, top {hits}") \
            as notes:
        bm25 = LuceneSearcher(str(Path(bm25_dir).resolve()))  # absolute, as above
        bm25.set_bm25(BM25_K1, BM25_B)
        found = _in_chunks(lambda a, b: list(bm25.batch_search(texts[a:b], judged[a:b], hits, threads).items()),
                           n, "bm25", progress)
        runs["bm25"] = _hits_to_run(dict(found), judged)
        notes.append(f"{_count_hits(runs['bm25'])} hits")
    lap("search bm25")
    runs["hybrid"] = fusion.hybrid(runs["dense"], runs["sparse"], alpha, depth=hits, k=hits)
    runs["hybrid-multi"] = fusion.hybrid(runs["dense-multi"], runs["sparse"], alpha, depth=hits, k=hits)
    runs["hybrid+bm25"] = fusion.fuse([runs["dense"], runs["sparse"], runs["bm25"]], bm25_weights, depth=hits, k=hits)
    runs = {name: runs[name] for name in RUN_NAMES}
    lap("fusion")
    run_dir = output / "runs"
    paths = {name: trec.write_run(run, run_dir / f"{name}.trec", f"diffret-{name}", hits) for name, run in runs.items()}
    shown = ", ".join(f"{name} {w:g}" for name, w in zip(("dense", "sparse", "bm25"), bm25_weights))
    log(f"fused hybrid (dense + sparse) and hybrid-multi (dense-multi + sparse), alpha {alpha}; hybrid+bm25 "
        f"({shown}): {len(paths)} runs -> {run_dir}")

    # 6. evaluation
    with stage(f"evaluating {len(paths)} runs with trec_eval ({len(qrels)} judged queries)"):
        metrics = evaluate_runs(paths, qrels_path, workers=min(threads, 4))
    lap("evaluate (trec_eval)")
    title = (f"DiffRetriever on {inputs.label}: {len(judged)} queries, {accounting['written']} documents, "
             f"model `{model.source}`")
    table = markdown_table(metrics, f"## {title}")
    (output / "metrics.md").write_text(table, encoding="utf-8")
    summary = {
        "inputs": {"corpus": str(inputs.corpus), "queries": str(inputs.queries), "qrels": str(inputs.qrels),
                   "judged_queries": len(judged)},
        "model": str(model.source), "device": device, "alpha": alpha, "hits": hits,
        "bm25_weights": dict(zip(("dense", "sparse", "bm25"), bm25_weights)),
        "bm25": {"k1": BM25_K1, "b": BM25_B, "index": bm25_counts},
        "metrics": metrics, "accounting": accounting, "lucene": lucene, "timings_s": timings,
        "resumed_from": result.resumed_from, "outputs": {
            "encoded": str(encoded), "lucene_index": str(index_dir), "bm25_index": str(bm25_dir),
            "faiss_index": str(encoded / "dense"),
            "slots": str(encoded / "slots"), "runs": {name: str(path) for name, path in paths.items()},
            "topics": str(topics_path), "qrels": str(qrels_path),
            "metrics": [str(output / "metrics.md"), str(output / "metrics.json")]},
    }
    (output / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def report(summary: dict) -> str:
    out = summary["outputs"]
    lines = ["", markdown_table(summary["metrics"]).rstrip(), "", "timings (s): " +
             ", ".join(f"{name} {seconds:.1f}" for name, seconds in summary["timings_s"].items()),
             f"total {sum(summary['timings_s'].values()):.1f} s", "", "outputs:",
             f"  encoded corpus   {out['encoded']}  (impact/, dense/, slots/)",
             f"  Lucene index     {out['lucene_index']}",
             f"  BM25 index       {out['bm25_index']}",
             f"  FAISS index      {out['faiss_index']}",
             f"  runs             {Path(out['runs']['sparse']).parent}/{{{','.join(out['runs'])}}}.trec",
             f"  topics, qrels    {out['topics']}, {out['qrels']}",
             f"  metrics          {out['metrics'][0]}, {out['metrics'][1]}",
             "", f"Lucene: indexed {summary['lucene']['indexed']}, empty impact vectors (not in Lucene, in FAISS) "
             f"{summary['lucene']['empty']}; BM25: indexed {summary['bm25']['index']['indexed']}, no text "
             f"{summary['bm25']['index']['empty']}",
             accounting_line(summary["accounting"])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=None, help="output folder (default: runs/demo/<name of the collection>:"
                        " sample, the --data folder's name or the corpus's; name it neutrally: Pyserini's topic "
                        "readers treat paths containing 'beir' or 'cacm' specially)")
    source = parser.add_argument_group("inputs (one of)")
    source.add_argument("--sample", action="store_true", help="the small sample collection shipped in the package")
    source.add_argument("--data", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    source.add_argument("--split", default="test", help="qrels split for --data (default test)")
    source.add_argument("--corpus", help="JSON lines (BEIR or id/contents), file or folder")
    source.add_argument("--queries", help="BEIR queries.jsonl or a topics TSV")
    source.add_argument("--qrels", help="BEIR qrels TSV or TREC qrels")
    parser.add_argument("--model", default="diffret", help="'diffret' (embedded default) or a model folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None, help="document text tokens (default: the model's)")
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid weight of the dense run (paper: 0.5)")
    parser.add_argument("--bm25-weights", type=float, nargs=3, default=list(BM25_WEIGHTS),
                        metavar=("DENSE", "SPARSE", "BM25"),
                        help="hybrid+bm25 weights of dense, sparse and BM25 (default: %(default)s, chosen on SciFact "
                             "train queries)")
    parser.add_argument("--candidates", type=int, default=1000, help="MaxSim candidate slots per query slot")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true",
                        help="encode and index again instead of resuming/reusing what the output folder holds")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip (and count) malformed corpus and query records instead of stopping at the first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    log = lambda message: print(message, flush=True)  # noqa: E731
    try:
        inputs = resolve_inputs(args.sample, args.data, args.split, args.corpus, args.queries, args.qrels)
        summary = run_pipeline(inputs, args.output, args.model, args.device, args.batch_size, args.hits, args.alpha,
                               args.candidates, args.threads, args.overwrite, not args.quiet, args.max_length, log,
                               skip_invalid=args.skip_invalid, bm25_weights=args.bm25_weights)
    except (InputError, ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(summary))
    return 0


__all__ = ["BM25_WEIGHTS", "METRICS", "RUN_NAMES", "Inputs", "default_output", "main", "resolve_inputs", "run_pipeline"]
