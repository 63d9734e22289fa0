"""CPU speed of the ONNX Runtime encoders (fp32, int8, int8w, int4w) against the torch fp32 reference, side by side.

Same texts, same batches, same post-processing (``DiffRetriever.encode_*``: tokenisation, one graph pass
per batch, quantisation); the runtimes are timed in turn each round (best of ``--repeats``) so that load
drifts on a shared machine hit all alike. Models: splade-tiny (real weights; ``--splade`` folder, default
the test cache) and a BERT masked LM of all-MiniLM-L6-v2's size (hidden 384, 6 layers, 30,522
vocabulary): random weights, or real ones with ``--minilm DIR`` (timing does not depend on the weights,
but the parity of the quantised exports does: random weights hide the activation outliers that make
``int8`` inaccurate). Texts: SciFact passages (title + text) and queries. Precisions: ``int8`` is dynamic
quantisation (int8 activations, per tensor), ``int8w``/``int4w`` weight-only (8/4-bit weights, float32
compute; ``onnx_export/weight_only.py``).

    python benchmarks/onnx_cpu.py [--data ../shared/data/scifact] [--docs 64] [--repeats 3] [--threads N]
                                  [--minilm DIR] [--precisions fp32,int8,int8w,int4w]
    python benchmarks/onnx_cpu.py --quality [--model DIR]   # + SciFact test nDCG@10 per precision (slow)

Prints texts/s per runtime and the speed-up over torch, twice: the graph alone (prebuilt batches through
``runtime.run``: what the runtime itself costs) and end to end (``encode_*``: also tokenisation, the
content filter and quantisation, which every runtime shares), the size of each graph and its parity with
torch. ``--quality`` also encodes SciFact (5,183 docs) with the ONNX exports of ``--model``
(default: splade-tiny) and reports dense and sparse nDCG@10 on the test queries: meaningful only for a
fine-tuned model (zero-shot mask slots of off-the-shelf encoders carry no meaning, DESIGN.md section 5).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from pyserini_diffret import load_model  # noqa: E402
from pyserini_diffret.onnx_export import PRECISIONS, compare_models, export_model  # noqa: E402
from pyserini_diffret.core.devices import physical_cores  # noqa: E402
from tests.tiny_models import make_mlm  # noqa: E402
from timing import interleaved_best, read_texts  # noqa: E402

DEFAULT_SPLADE = REPO / ".cache" / "test-weights" / "splade-tiny"


def bench_model(label: str, source: Path, work: Path, passages, queries, args, backbone: str = "mlm") -> list[tuple]:
    exports = {p: export_model(source, work / f"{label}-{p}", backbone=backbone, precision=p) for p in args.precisions}
    options = dict(batch_size=args.batch_size, k_doc=args.k_doc, k_query=args.k_query)
    models = {"torch fp32": load_model(source, backbone=backbone, runtime="torch", **options)}
    for precision, folder in exports.items():
        models[f"onnx {precision}"] = load_model(folder, threads=args.threads, **options)
    parity = {name: compare_models(m, models["torch fp32"], precision=name.split()[1])
              for name, m in models.items() if name != "torch fp32"}
    rows = []
    for side, texts in (("document", passages), ("query", queries)):
        reference = models["torch fp32"]
        k = reference.k_doc if side == "document" else reference.k_query
        chunks = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
        batches = [(reference.prompts.build(c, side, k), reference.content.ids(c)) for c in chunks]
        stop = reference.config.stop_truncation
        graph = {name: (lambda m=m: [m.runtime.run(b, ids, stop) for b, ids in batches]) for name, m in models.items()}
        encode = {name: (lambda m=m: (m.encode_documents if side == "document" else m.encode_queries)(texts))
                  for name, m in models.items()}
        graph_best = interleaved_best(graph, args.repeats)
        best = interleaved_best(encode, args.repeats)
        for name in models:
            row = (label, side, name, len(texts) / graph_best[name], graph_best["torch fp32"] / graph_best[name],
                   len(texts) / best[name], best["torch fp32"] / best[name])
            rows.append(row)
            print(f"  {label:12} {side:8} {name:11} graph {row[3]:8.1f} texts/s x{row[4]:.2f}   "
                  f"end to end {row[5]:8.1f} texts/s x{row[6]:.2f}", flush=True)
    for name, report in parity.items():
        size = (exports[name.split()[1]] / "model.onnx").stat().st_size / 1024**2
        print(f"  {label}: {name} ({size:.1f} MB) vs torch: slot rel {report.worst('slot_rel_error'):.1e}, dense rel "
              f"{report.worst('dense_rel_error'):.1e}, term abs {report.worst('term_abs_error'):.1e}, impacts differing "
              f"{sum(s.impact_differing for s in report.sides)}/{sum(s.impact_entries for s in report.sides)}, "
              f"largest difference {max(s.impact_max_diff for s in report.sides)}")
    return rows


def quality(source: Path, work: Path, data: Path, args) -> None:
    """SciFact test nDCG@10 of each ONNX precision, read and scored by the code the quality benchmark uses."""
    from pyserini_diffret.train import evaluate as ev  # noqa: PLC0415
    from pyserini_diffret.train.data import read_corpus, read_qrels, read_queries  # noqa: PLC0415

    corpus = read_corpus(data / "corpus.jsonl")
    qrels = read_qrels(data / "qrels" / "test.tsv")
    queries = read_queries(data / "queries.jsonl")
    qids, doc_ids = [q for q in qrels if q in queries], list(corpus)
    print(f"\nSciFact test nDCG@10 ({len(doc_ids)} docs, {len(qids)} queries), model {source}")
    for precision in args.precisions:
        folder = export_model(source, work / f"quality-{precision}", precision=precision)
        model = load_model(folder, batch_size=args.batch_size, threads=args.threads)
        start = time.perf_counter()
        docs = model.encode(list(corpus.values()), side="document")
        qs = model.encode_queries([queries[q] for q in qids])
        seconds = time.perf_counter() - start
        dense = ev.metrics(ev.dense_search(qs.dense, docs.dense, qids, doc_ids), qrels)["ndcg@10"]
        sparse = ev.metrics(ev.sparse_search(qs.weights, docs.weights, qids, doc_ids), qrels)["ndcg@10"]
        print(f"  onnx {precision}: dense {dense:.3f}, sparse {sparse:.3f} ({seconds:.0f} s to encode)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--splade", type=Path, default=DEFAULT_SPLADE, help="splade-tiny folder (skipped if absent)")
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k-doc", type=int, default=16)
    parser.add_argument("--k-query", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="threads for both runtimes (default: physical cores)")
    parser.add_argument("--quality", action="store_true", help="also SciFact test nDCG@10 of each ONNX precision")
    parser.add_argument("--minilm", type=Path, default=None,
                        help="MiniLM-size BERT masked LM with real weights (default: random weights)")
    parser.add_argument("--precisions", default="fp32,int8,int8w,int4w",
                        help="comma-separated ONNX precisions to export and time (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=None, help="model for --quality (default: splade-tiny)")
    args = parser.parse_args()
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(args.precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown precision(s) {unknown}; choose from {', '.join(PRECISIONS)}")
    threads = args.threads or physical_cores()
    args.threads = threads
    torch.set_num_threads(threads)
    passages, queries = read_texts(args.data, args.docs)
    queries = queries[: args.docs]
    print(f"CPU: {threads} threads for torch {torch.__version__} and onnxruntime; {len(passages)} SciFact passages "
          f"(K={args.k_doc}), {len(queries)} queries (K={args.k_query}), batch {args.batch_size}, best of {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if (args.splade / "config.json").is_file():
            rows += bench_model("splade-tiny", args.splade, work, passages, queries, args)
        else:
            print(f"  ({args.splade} not found: splade-tiny skipped; the test suite fetches it into that folder)")
        if args.minilm is not None:
            rows += bench_model("MiniLM", args.minilm, work, passages, queries, args)
        else:
            minilm = make_mlm(work / "minilm-size", hidden=384, layers=6, vocab_size=30522)
            rows += bench_model("MiniLM-size", minilm, work, passages, queries, args)
        print()
        print("| model | side | runtime | graph texts/s | graph vs torch | end-to-end texts/s | end-to-end vs torch |")
        print("|---|---|---|---|---|---|---|")
        for label, side, name, rate, ratio, e2e, e2e_ratio in rows:
            print(f"| {label} | {side} | {name} | {rate:.1f} | {ratio:.2f}x | {e2e:.1f} | {e2e_ratio:.2f}x |")
        if args.quality:
            quality(args.model or args.splade, work, args.data, args)


if __name__ == "__main__":
    main()
