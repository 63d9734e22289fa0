"""Peak memory of loading a ~1B-parameter Dream-architecture folder natively (``backbones/native.py``).

Builds a random Dream-layout folder (config.json with ``model_type`` "Dream" and ``auto_map``, Qwen2 tensor
names, sharded float32 safetensors) in a temporary directory, then loads it in fresh subprocesses and
reports, per load, the peak resident memory above the baseline after imports (``ru_maxrss`` minus the RSS
measured just before loading) next to the folder size. For comparison, the same shards (hard links) with a
stock ``qwen2`` config.json are loaded with ``AutoModelForCausalLM.from_pretrained``.

    python benchmarks/native_loading.py [--layers 9] [--hidden 2048] [--shard-gb 1.0] [--keep DIR]

The temporary folder is deleted at the end (unless ``--keep``). Needs about 2.2x the folder size in
memory headroom for the largest case and the folder size on disk (about 4.1 GB with the defaults).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB = 152064  # Dream's


def _shapes(layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int) -> dict[str, tuple[int, ...]]:
    head_dim = hidden // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, hidden)}
    for n in range(layers):
        p = f"model.layers.{n}."
        shapes.update({
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.q_proj.bias": (hidden,),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.k_proj.bias": (kv_heads * head_dim,),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.bias": (kv_heads * head_dim,),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
        })
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (VOCAB, hidden)
    return shapes


def build(folder: Path, *, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int,
          shard_bytes: int) -> tuple[int, int]:
    """Write the Dream folder (one shard in memory at a time); returns (parameters, bytes on disk)."""
    import torch
    from safetensors.torch import save_file

    shapes = _shapes(layers, hidden, heads, kv_heads, intermediate)
    config = {
        "architectures": ["DreamModel"], "model_type": "Dream",
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
        "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": 131072,
        "max_window_layers": layers, "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
        "pad_token_id": 151643, "mask_token_id": 151666, "torch_dtype": "float32", "use_cache": False,
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    groups: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 4
        for d in shape:
            nbytes *= d
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    generator = torch.Generator().manual_seed(0)
    weight_map, total, params = {}, 0, 0
    for i, group in enumerate(groups, start=1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name in group:
            shape = shapes[name]
            tensor = torch.randn(shape, generator=generator) / (shape[-1] ** 0.5 if len(shape) > 1 else 10.0)
            if name.endswith("norm.weight"):
                tensor += 1.0
            tensors[name] = tensor
            params += tensor.numel()
            total += tensor.numel() * 4
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        del tensors
        weight_map.update({name: file for name in group})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}), encoding="utf-8")
    return params, sum(f.stat().st_size for f in folder.iterdir())


def stock_twin(folder: Path, twin: Path) -> None:
    """The same shards (hard links) under a stock qwen2 config.json."""
    twin.mkdir()
    for file in folder.iterdir():
        if file.suffix == ".safetensors" or file.name.endswith(".index.json"):
            os.link(file, twin / file.name)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("auto_map", "mask_token_id"):
        config.pop(key)
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (twin / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """Peak RSS of this process image: ``VmHWM`` (reset by exec), which ``ru_maxrss`` is not on Linux: a
    child's ru_maxrss starts at its parent's RSS at fork. Both are reported; the parent stays small anyway."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(kind: str, folder: str, dtype_name: str) -> None:
    """Load once and print a JSON line: baseline RSS, peak RSS, RSS after, parameter bytes, seconds."""
    import torch
    import transformers
    from transformers import Qwen2ForCausalLM  # noqa: F401  (the modelling code is imported before the baseline)

    from pyserini_diffret.backbones import native

    dtype = getattr(torch, dtype_name)
    baseline = _rss()
    start = time.perf_counter()
    if kind == "native":
        model = native.load_native(Path(folder), dtype=dtype)
    else:
        config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=False)
        config.is_causal = False
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype,
                                                                  trust_remote_code=False)
    seconds = time.perf_counter() - start
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"baseline": baseline, "peak": _peak(), "maxrss": maxrss, "after": _rss(),
                      "param_bytes": param_bytes, "seconds": seconds}))


def run_child(kind: str, folder: Path, dtype: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(folder), dtype], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {dtype} load failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--shard-gb", type=float, default=1.0)
    parser.add_argument("--no-stock", action="store_true", help="skip the from_pretrained comparison")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep the folder")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.build:
        folder = Path(args.build)
        params, folder_bytes = build(folder, layers=args.layers, hidden=args.hidden, heads=args.heads,
                                     kv_heads=args.kv_heads, intermediate=args.intermediate,
                                     shard_bytes=int(args.shard_gb * 2**30))
        print(json.dumps({"params": params, "bytes": folder_bytes}))
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="native-loading-"))
    try:
        folder = root / "dream"
        start = time.perf_counter()
        sizes = [f"--layers={args.layers}", f"--hidden={args.hidden}", f"--heads={args.heads}",
                 f"--kv-heads={args.kv_heads}", f"--intermediate={args.intermediate}", f"--shard-gb={args.shard_gb}"]
        built = subprocess.run([sys.executable, __file__, "--build", str(folder), *sizes], capture_output=True,
                               text=True, check=False, env=dict(os.environ, PYTHONPATH=str(REPO)))
        if built.returncode != 0:
            raise SystemExit(f"building the folder failed:\n{built.stderr[-3000:]}")
        info = json.loads(built.stdout.strip().splitlines()[-1])
        params, folder_bytes = info["params"], info["bytes"]
        shards = len(list(folder.glob("*.safetensors")))
        print(f"Dream-architecture folder: {params / 1e9:.3f}B parameters, float32, {shards} shards, "
              f"{folder_bytes / 2**30:.2f} GiB (built in {time.perf_counter() - start:.0f} s)")
        cases = [("native", folder, "float32"), ("native", folder, "bfloat16")]
        if not args.no_stock:
            twin = root / "qwen2"
            stock_twin(folder, twin)
            cases += [("from_pretrained", twin, "float32"), ("from_pretrained", twin, "bfloat16")]
        print(f"{'loader':<16} {'dtype':<9} {'params GiB':>10} {'peak GiB':>9} {'maxrss GiB':>10} "
              f"{'peak/folder':>11} {'peak/params':>11} {'after GiB':>9} {'seconds':>8}")
        for kind, path, dtype in cases:
            r = run_child(kind, path, dtype)
            peak = r["peak"] - r["baseline"]
            print(f"{kind:<16} {dtype:<9} {r['param_bytes'] / 2**30:>10.2f} {peak / 2**30:>9.2f} "
                  f"{(r['maxrss'] - r['baseline']) / 2**30:>10.2f} {peak / folder_bytes:>11.2f} "
                  f"{peak / r['param_bytes']:>11.2f} {(r['after'] - r['baseline']) / 2**30:>9.2f} {r['seconds']:>8.1f}")
        print("peak: VmHWM of the loading process minus its RSS just before loading (after imports); maxrss: the same "
              "with ru_maxrss; after: RSS once loaded (from_pretrained float32 maps the files: its parameters are "
              "page cache until first touched)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
