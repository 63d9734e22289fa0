"""GPU check: onnxruntime-gpu (CUDA EP, fp16) against torch on a Qwen2-0.5B-shaped bidirectional encoder.

One device call. Builds a random Dream stand-in with Qwen2-0.5B's shape (hidden 896, 24 layers, 14 query
/ 2 key-value heads, MLP 4864, vocabulary 151,936, tied embeddings; timing does not depend on the
weights) with Dream's mask token and chat markup, exports it in fp16 twice -- the default export (fused
MultiHeadAttention + onnxruntime fusions) and a plain one (attention as traced) -- and runs, on the same
batches of 64 texts of ~200 tokens with K = 16:

- torch fp16 (the torch runtime: SDPA attention), the reference for speed;
- onnxruntime-gpu, CUDA provider with I/O binding, for each export.

Prints docs/s side by side (graph time: a prebuilt batch through ``runtime.run``, outputs on the host),
the parity of each export against torch fp16 and torch fp32 (slot/dense relative error, term-weight
error, differing impact entries), and writes everything to ``$OUT/gpu_onnx_check.json`` when ``$OUT``
is set.

On the lent machine (see ../shared/device/ORT_GPU.md: its onnxruntime has no CUDA provider; carry the
onnxruntime-gpu wheel in five pieces first), the device call is::

    cat /tmp/op/part0 /tmp/op/part1 /tmp/op/part2 /tmp/op/part3 /tmp/op/part4 > /tmp/ort.whl && \
    python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/ort.whl && \
    PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_onnx_check.py

``--tiny`` runs the same flow on a small model (CPU or GPU) to check the script itself in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPE_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                 max_position_embeddings=32768, tie_word_embeddings=True)
SHAPE_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=4096, max_position_embeddings=2048, tie_word_embeddings=True)


def _nltk_stand_in() -> bool:
    """The content filter imports NLTK's data-free tokenisers; images without NLTK get a regex stand-in
    (same mask for both runtimes, so speed and parity are unaffected)."""
    try:
        import nltk.tokenize  # noqa: F401, PLC0415

        return False
    except ImportError:
        import re  # noqa: PLC0415

        class Words:
            def tokenize(self, text):
                return re.findall(r"\w+|[^\w\s]", text)

        class Sentences:
            def tokenize(self, text):
                return [text]

        nltk = types.ModuleType("nltk")
        tokenize = types.ModuleType("nltk.tokenize")
        punkt = types.ModuleType("nltk.tokenize.punkt")
        tokenize.NLTKWordTokenizer = Words
        punkt.PunktSentenceTokenizer = Sentences
        nltk.tokenize, tokenize.punkt = tokenize, punkt
        sys.modules.update({"nltk": nltk, "nltk.tokenize": tokenize, "nltk.tokenize.punkt": punkt})
        return True


def build_model(folder: Path, shape: dict, dtype) -> Path:
    import torch  # noqa: PLC0415
    from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: PLC0415

    from tests.tiny_models import QWEN_TEMPLATE, _bpe_tokenizer  # noqa: PLC0415

    tokenizer = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"])
    tokenizer.eos_token, tokenizer.pad_token = "<|endoftext|>", "<|endoftext|>"
    tokenizer.chat_template = QWEN_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(dtype).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_texts(n: int) -> list[str]:
    from tests.tiny_models import CORPUS  # noqa: PLC0415

    base = sorted(set(CORPUS))
    return [" ".join(base[(i + j) % len(base)] for j in range(12)) + f" ({i})" for i in range(n)]


def time_run(runtime, batch, content_ids, repeats: int, sync) -> float:
    for _ in range(3):
        runtime.run(batch, content_ids, False)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runtime.run(batch, content_ids, False)
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def attention_kernels(folder: Path, model, batch, content_ids) -> list[str]:
    """Which MultiHeadAttention kernel onnxruntime picks (its debug switch prints it to fd 1)."""
    from pyserini_diffret.runtimes.onnx_runtime import make_session  # noqa: PLC0415

    os.environ["ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO"] = "1"
    try:
        session = make_session(folder / "model.onnx", device="cuda")
        feeds = model.runtime.feeds(batch, content_ids, False)
        with tempfile.TemporaryFile(mode="w+") as capture:
            sys.stdout.flush()
            saved = os.dup(1)
            os.dup2(capture.fileno(), 1)
            try:
                session.run(None, feeds)
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
            capture.seek(0)
            lines = [line.strip() for line in capture if line.strip()]
        return sorted(set(lines))[:8]
    finally:
        os.environ.pop("ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO", None)


def session_diagnostics(folder: Path, model, batch, content_ids, work: Path, cuda: bool) -> dict:
    """The graph onnxruntime really runs on CUDA (op counts after its own fusions) and where the time goes."""
    import collections  # noqa: PLC0415

    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    work.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(work / "optimized.onnx")
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=providers)
    feeds = model.runtime.feeds(batch, content_ids, False)
    for _ in range(3):
        session.run(None, feeds)
    trace = json.loads(Path(session.end_profiling()).read_text())
    optimized = onnx.load(str(work / "optimized.onnx"), load_external_data=False)
    ops = collections.Counter(node.op_type for node in optimized.graph.node)
    times = collections.Counter()
    providers = collections.Counter()
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            times[event["args"].get("op_name", "?")] += event.get("dur", 0)
            providers[event["args"].get("provider", "?")] += event.get("dur", 0)
    total = sum(times.values()) or 1
    return {
        "optimized_ops": dict(ops.most_common(15)),
        "kernel_time_share": {op: round(100 * t / total, 1) for op, t in times.most_common(12)},
        "kernel_ms_per_run": round(total / 3 / 1000, 2),
        "provider_time_share": {p: round(100 * t / total, 1) for p, t in providers.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small model: check the script, not the speed")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=200, help="target sequence length (prompt + text + slots)")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--variants", default="fused,plain", help="exports to compare: fused, plain")
    args = parser.parse_args()
    stand_in = _nltk_stand_in()

    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.onnx_export import compare_models, export  # noqa: PLC0415

    cuda = torch.cuda.is_available()
    providers = ort.get_available_providers()
    print(f"torch {torch.__version__} (CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}), "
          f"onnxruntime {ort.__version__} providers {providers}" + (", NLTK stand-in" if stand_in else ""), flush=True)
    on_gpu = cuda and "CUDAExecutionProvider" in providers
    if not on_gpu and not args.tiny:
        print("error: needs a CUDA GPU and onnxruntime-gpu with CUDAExecutionProvider (see the docstring); "
              "--tiny runs the flow on CPU", file=sys.stderr)
        return 2
    device = "cuda" if on_gpu else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    shape = SHAPE_TINY if args.tiny else SHAPE_05B
    results: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "shape": shape,
                     "torch": torch.__version__, "onnxruntime": ort.__version__, "runs": {}, "parity": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        source = build_model(tmp / "qwen2-shaped", shape, torch.float16 if on_gpu else torch.float32)
        print(f"built the random model in {time.perf_counter() - start:.0f} s", flush=True)
        texts = make_texts(args.batch)
        torch_fp16 = load_model(source, backbone="dream", runtime="torch", device=device,
                                dtype="float16" if on_gpu else "float32", k_doc=args.k, batch_size=args.batch)
        before, after = torch_fp16.prompts.frame("document", args.k)
        overhead = len(before) + len(after) + args.k + len(torch_fp16.layout.tail_ids)
        max_text = max(8, args.tokens - overhead)
        torch_fp16 = load_model(source, backbone="dream", runtime="torch", device=device,
                                dtype="float16" if on_gpu else "float32", k_doc=args.k, batch_size=args.batch,
                                max_document_length=max_text)
        batch = torch_fp16.prompts.build(texts, "document", args.k)
        content_ids = torch_fp16.content.ids(texts)
        length = batch.input_ids.shape[1]
        print(f"batch {args.batch} x {length} tokens (text <= {max_text}), K = {args.k}", flush=True)
        seconds = time_run(torch_fp16.runtime, batch, content_ids, args.repeats, sync)
        torch_name = f"torch {'fp16' if on_gpu else 'fp32'} (SDPA)"
        results["runs"][torch_name] = {"seconds": seconds, "docs_per_s": args.batch / seconds}
        print(f"  {torch_name}: {seconds * 1000:.1f} ms per batch, {args.batch / seconds:.0f} docs/s", flush=True)
        torch_fp32 = load_model(source, backbone="dream", runtime="torch", device=device, dtype="float32",
                                k_doc=args.k, max_document_length=max_text)
        precision = "fp16" if on_gpu else "fp32"
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            start = time.perf_counter()
            result = export(source, tmp / f"onnx-{variant}", backbone="dream", precision=precision, device=device,
                            fused_attention=variant == "fused", k_doc=args.k, max_document_length=max_text)
            export_s = time.perf_counter() - start
            fusions = ", ".join(f"{k} x{v}" for k, v in sorted(result.record.fusions.items())) or "none"
            print(f"exported {variant} in {export_s:.0f} s: attention {result.record.attention}; fusions {fusions}",
                  flush=True)
            model = load_model(result.path, device=device, batch_size=args.batch)
            seconds = time_run(model.runtime, batch, content_ids, args.repeats, sync)
            name = f"onnxruntime {precision} ({variant})"
            results["runs"][name] = {"seconds": seconds, "docs_per_s": args.batch / seconds,
                                     "export_seconds": export_s, "fusions": result.record.fusions,
                                     "providers": model.runtime.providers}
            print(f"  {name}: {seconds * 1000:.1f} ms per batch, {args.batch / seconds:.0f} docs/s", flush=True)
            for ref_name, reference in ((torch_name.split(" (")[0], torch_fp16), ("torch fp32", torch_fp32)):
                report = compare_models(model, reference, precision=precision)
                results["parity"][f"{name} vs {ref_name}"] = report.to_dict()
                print(f"    vs {ref_name}: slot rel {report.worst('slot_rel_error'):.2e}, dense rel "
                      f"{report.worst('dense_rel_error'):.2e}, term abs {report.worst('term_abs_error'):.2e}, "
                      f"impacts differing {sum(s.impact_differing for s in report.sides)}/"
                      f"{sum(s.impact_entries for s in report.sides)} -> {'PASS' if report.passed else 'FAIL'}",
                      flush=True)
            try:
                diagnostics = session_diagnostics(result.path, model, batch, content_ids, tmp / f"diag-{variant}", on_gpu)
                results["runs"][name]["diagnostics"] = diagnostics
                print(f"    onnxruntime's graph: {diagnostics['optimized_ops']}", flush=True)
                print(f"    kernel time {diagnostics['kernel_ms_per_run']} ms/run: {diagnostics['kernel_time_share']} "
                      f"by provider {diagnostics['provider_time_share']}", flush=True)
                if on_gpu and variant == "fused":
                    results["attention_kernels"] = attention_kernels(result.path, model, batch, content_ids)
                    print("    attention kernel: " + " | ".join(results["attention_kernels"]), flush=True)
            except Exception as error:  # noqa: BLE001 - a diagnostic only
                print(f"    (diagnostics failed: {type(error).__name__}: {error})", flush=True)
            del model
        del torch_fp32
    base = results["runs"][torch_name]["seconds"]
    print()
    print(f"| runtime ({results['device']}, batch {args.batch} x {length} tokens, K={args.k}) | ms/batch | docs/s | vs torch |")
    print("|---|---|---|---|")
    for name, run in results["runs"].items():
        print(f"| {name} | {run['seconds'] * 1000:.1f} | {run['docs_per_s']:.0f} | {base / run['seconds']:.2f}x |")
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_onnx_check.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
