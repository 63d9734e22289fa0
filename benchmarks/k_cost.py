"""Where the cost of K goes on short queries: K = 1, 4, 16 on the ONNX int8 default model and its fp32 twin.

BENCHMARKS.md section 1 measured K = 16 at 1.40-1.63x the cost of K = 1 on queries. This splits one
``encode_queries`` call of short SciFact queries (``--min-tokens``..``--max-tokens`` text tokens, default 8-12)
into its stages, each timed alone on prebuilt inputs, K values timed in turn each round (median of
``--repeats``):

- ``prompt``: ``PromptBuilder.build`` (tokenisation, prompt frame, K mask slots, left padding);
- ``content``: ``ContentFilter.ids`` (the text's own words -> their vocabulary ids; does not depend on K);
- ``graph``: ``runtime.run`` on the prebuilt batch (one onnxruntime call);
- ``post``: ``pool_content_scores`` (per-slot top-k, max over slots), ``quantise`` (integer impacts) and
  ``single_vectors`` on the graph's outputs;
- ``end to end``: ``encode_queries`` itself (the stages plus batching and re-ordering).

Then inside the graph: onnxruntime's profiler (``SessionOptions.enable_profiling``) on the same graph and
inputs, per-node kernel times summed by op type and by part: ``vocabulary`` (nodes with a vocabulary-sized
[.., V] input or output; since the LM head is read at the content ids only, none are left unless the
graph has the zero-shot stop-token rule) and ``encoder`` (everything else: embeddings, attention,
feed-forward, the LM head's transform and its product with the content rows, the read-out's small ops).

Models: the embedded default ``diffret`` (ONNX int8) and the fp32 export of the same weights (by default
recovered from the int8 graph with ``onnx_export.recover.recover_weights``, i.e. the dequantised weights;
``--fp32-source DIR`` exports a Hugging Face folder instead, ``--fp32 DIR`` uses an existing fp32 export).
Speed does not depend on the weights' values.

    python benchmarks/k_cost.py [--ks 1,4,16] [--queries 64] [--batch-sizes 1,32] [--repeats 5] [--threads N]
                                [--profile-runs 20] [--precisions int8,fp32] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from peers import cached  # noqa: E402
from timing import interleaved_times, read_texts  # noqa: E402

STAGES = ("prompt", "content", "graph", "post", "end to end")


def fp32_twin(args, work: Path) -> Path:
    """An fp32 export of the default model's weights (see the module docstring)."""
    from pyserini_diffret.onnx_export import export_model  # noqa: PLC0415

    if args.fp32 is not None:
        return args.fp32
    source = fp32_source(args, work)
    return cached(work / "fp32", source, {"precision": "fp32"},
                  lambda out: export_model(source, out, precision="fp32"))


def fp32_source(args, work: Path) -> Path:
    """The Hugging Face weights of the default model: ``--fp32-source``, else recovered from the int8 graph."""
    from pyserini_diffret.onnx_export.recover import recover_weights  # noqa: PLC0415
    from pyserini_diffret.registry import resolve_model  # noqa: PLC0415

    if args.fp32_source is not None:
        return args.fp32_source
    int8 = resolve_model("diffret")
    return cached(work / "recovered", int8, {}, lambda out: recover_weights(int8, out))


def short_queries(model, data: Path, low: int, high: int, count: int) -> list[str]:
    _, queries = read_texts(data, 0)
    lengths = model.tokenizer(queries, add_special_tokens=False)["input_ids"]
    chosen = [q for q, ids in zip(queries, lengths) if low <= len(ids) <= high]
    if not chosen:
        raise SystemExit(f"no query of {low}-{high} text tokens in {data}")
    return chosen[:count]


def stage_functions(model, chunks: list[list[str]], k: int):
    from pyserini_diffret.core.representations import (  # noqa: PLC0415
        Representations,
        pool_content_scores,
        quantise,
        single_vectors,
    )

    config = model.config
    batches = [model.prompts.build(c, "query", k) for c in chunks]
    masks = [model.content.ids(c) for c in chunks]
    outputs = [model.runtime.run(b, m, config.stop_truncation) for b, m in zip(batches, masks)]

    def post():
        for (vectors, scores), content_ids in zip(outputs, masks):
            weights = pool_content_scores(scores, config.terms_per_slot)
            ids, impacts = quantise(weights, content_ids, config.scale, config.quantisation)
            Representations(single_vectors(vectors), vectors, ids, impacts, model.vocabulary)

    return {
        "prompt": lambda: [model.prompts.build(c, "query", k) for c in chunks],
        "content": lambda: [model.content.ids(c) for c in chunks],
        "graph": lambda: [model.runtime.run(b, m, config.stop_truncation) for b, m in zip(batches, masks)],
        "post": post,
        "end to end": lambda: end_to_end(model, chunks, k),
    }, batches, masks


def end_to_end(model, chunks: list[list[str]], k: int):
    """``encode_queries`` with K query slots (the model's own K_q is 4: set it for the call, then put it back)."""
    saved = model.config.k_query
    model.config.k_query = k
    try:
        return [model.encode_queries(c, batch_size=len(c)) for c in chunks]
    finally:
        model.config.k_query = saved


def profile_graph(model, batches, masks, runs: int, threads: int, work: Path, tag: str) -> dict[str, dict[str, float]]:
    """Kernel microseconds per query, summed by op type and by part (onnxruntime profiler, the runtime's session
    options plus profiling; the first pass over the batches is a warm-up and is not counted)."""
    import onnxruntime as ort  # noqa: PLC0415

    from pyserini_diffret.core.record import OUTPUT_NAMES  # noqa: PLC0415

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / f"profile-{tag}")
    graph = Path(model.spec.source) / model.spec.record.graph
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    feeds = [model.runtime.feeds(b, m, model.config.stop_truncation) for b, m in zip(batches, masks)]
    for _ in range(runs + 1):
        for f in feeds:
            session.run(list(OUTPUT_NAMES), f)
    events = json.loads(Path(session.end_profiling()).read_text())
    session_runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    since = session_runs[len(feeds)] if len(session_runs) > len(feeds) else 0  # after the warm-up pass
    texts = sum(b.input_ids.shape[0] for b in batches)  # per pass over the batches
    vocab = model.vocab_size
    # Per node: its kernel time summed over one pass, for each pass; the median over passes resists the
    # pre-emptions of a busy machine better than the mean.
    passes: dict[str, list[float]] = defaultdict(lambda: [0.0] * runs)
    labels: dict[str, tuple[str, str]] = {}
    boundaries = session_runs[len(feeds)::len(feeds)]  # start of each counted pass
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < since:
            continue
        event_args = event.get("args", {})
        shapes = [dims for entry in event_args.get("output_type_shape", []) + event_args.get("input_type_shape", [])
                  for dims in entry.values()]
        part = "vocabulary" if any(dims and dims[-1] == vocab for dims in shapes) else "encoder"
        index = min(sum(1 for b in boundaries if b <= event["ts"]) - 1, runs - 1)
        passes[event["name"]][index] += event["dur"]
        labels[event["name"]] = (event_args.get("op_name", "?"), part)
    by_op: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    for node, durations in passes.items():
        op, part = labels[node]
        value = statistics.median(durations) / texts
        by_op[f"{op} ({part})"] += value
        by_part[part] += value
    for leftover in work.glob(f"profile-{tag}*.json"):
        leftover.unlink()
    return {"op": dict(by_op), "part": dict(by_part)}


def sequence_length(batches) -> float:
    return statistics.mean(b.input_ids.shape[1] for b in batches)


def run(args, name: str, tag: str, model, queries: list[str], work: Path) -> None:
    ks = args.ks
    for batch_size in args.batch_sizes:
        chunks = [queries[i:i + batch_size] for i in range(0, len(queries), batch_size)]
        fns, prepared = {}, {}
        for k in ks:
            stages, batches, masks = stage_functions(model, chunks, k)
            prepared[k] = (batches, masks)
            for stage, fn in stages.items():
                fns[(k, stage)] = fn
        times = interleaved_times(fns, args.repeats)
        per_query = {key: 1000 * statistics.median(t) / len(queries) for key, t in times.items()}
        print(f"\n### {name}, batch {batch_size}: ms per query (median of {args.repeats}; {len(queries)} queries of "
              f"{args.min_tokens}-{args.max_tokens} text tokens)\n")
        print("| K | tokens (mean padded length) | " + " | ".join(STAGES) + " | sum of stages | graph vs K=1 | "
              "end to end vs K=1 |")
        print("|---|---|" + "---|" * (len(STAGES) + 3))
        base = ks[0]
        for k in ks:
            row = [per_query[(k, s)] for s in STAGES]
            total = sum(row[:4])
            print(f"| {k} | {sequence_length(prepared[k][0]):.1f} | " + " | ".join(f"{v:.3f}" for v in row)
                  + f" | {total:.3f} | {per_query[(k, 'graph')] / per_query[(base, 'graph')]:.2f}x | "
                  f"{per_query[(k, 'end to end')] / per_query[(base, 'end to end')]:.2f}x |")
        if args.profile_runs <= 0:
            continue
        profiles = {k: profile_graph(model, *prepared[k], args.profile_runs, args.threads, work,
                                     f"{tag}-b{batch_size}-k{k}") for k in (ks[0], ks[-1])}
        lo, hi = ks[0], ks[-1]
        print(f"\nInside the graph (onnxruntime profiler: each node's median over {args.profile_runs} passes, summed; kernel µs per query; "
              f"'vocabulary' = nodes with a [.., {model.vocab_size}] input or output):\n")
        print(f"| part | K={lo} | K={hi} | K={hi} - K={lo} | share of the increase |")
        print("|---|---|---|---|---|")
        parts = sorted(set(profiles[lo]["part"]) | set(profiles[hi]["part"]))
        increase = sum(profiles[hi]["part"].values()) - sum(profiles[lo]["part"].values())
        for part in parts + ["all"]:
            a = sum(profiles[lo]["part"].values()) if part == "all" else profiles[lo]["part"].get(part, 0.0)
            b = sum(profiles[hi]["part"].values()) if part == "all" else profiles[hi]["part"].get(part, 0.0)
            share = (b - a) / increase if increase > 0 else float("nan")
            print(f"| {part} | {a:.0f} | {b:.0f} | {b - a:+.0f} | {share:.0%} |")
        print(f"\n| op type (part) | K={lo} µs | K={hi} µs | K={hi} - K={lo} |\n|---|---|---|---|")
        ops = set(profiles[lo]["op"]) | set(profiles[hi]["op"])
        ranked = sorted(ops, key=lambda o: -(profiles[hi]["op"].get(o, 0.0) - profiles[lo]["op"].get(o, 0.0)))
        for op in ranked[: args.top_ops]:
            a, b = profiles[lo]["op"].get(op, 0.0), profiles[hi]["op"].get(op, 0.0)
            print(f"| {op} | {a:.0f} | {b:.0f} | {b - a:+.0f} |")
        vocabulary_hi = profiles[hi]["part"].get("vocabulary", 0.0)
        total_hi = sum(profiles[hi]["part"].values())
        total_lo = sum(profiles[lo]["part"].values())
        vocabulary_lo = profiles[lo]["part"].get("vocabulary", 0.0)
        if total_lo > 0:
            print(f"\nK={hi} / K={lo} inside the graph: {total_hi / total_lo:.2f}x. The vocabulary-sized work is "
                  f"{vocabulary_lo / total_lo:.0%} of the graph at K={lo} and {vocabulary_hi / total_hi:.0%} at K={hi}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--ks", default="1,4,16")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--min-tokens", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--profile-runs", type=int, default=20, help="0: no onnxruntime profile")
    parser.add_argument("--top-ops", type=int, default=12)
    parser.add_argument("--precisions", default="int8,fp32")
    parser.add_argument("--fp32", type=Path, default=None, help="an existing fp32 export of the default model")
    parser.add_argument("--fp32-source", type=Path, default=None,
                        help="Hugging Face folder to export in fp32 (default: weights recovered from the int8 graph)")
    parser.add_argument("--work", type=Path, default=None, help="keep the fp32 export here and reuse it")
    args = parser.parse_args()
    args.ks = sorted(int(k) for k in args.ks.split(","))
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]

    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.core.devices import physical_cores  # noqa: PLC0415

    args.threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="bench-k-cost-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        folders = {"int8": "diffret"}
        if "fp32" in precisions:
            folders["fp32"] = fp32_twin(args, work)
        print(f"K cost on short queries: {args.threads} threads, K in {args.ks}, batch sizes {args.batch_sizes}.")
        queries = None
        for precision in precisions:
            model = load_model(folders[precision], threads=args.threads)
            queries = short_queries(model, args.data, args.min_tokens, args.max_tokens, args.queries)
            run(args, f"ONNX {precision} ({folders[precision]})", precision, model, queries, work)


if __name__ == "__main__":
    main()
