"""The over-2-GB ONNX export path on a random Dream-architecture folder of about 0.6B parameters.

Builds the folder (``tests/real_arch.py``: Dream's config keys, weight names, tokenizer and chat template;
hidden 1024, 24 layers, 16 heads, 2 KV heads, MLP 2816, untied LM head: 0.57B parameters, 2.3 GB in float32)
in a temporary directory, exports it in float32 with ``--verify`` (the graph's weights go to
``model.onnx.data`` past protobuf's 2 GB limit), loads the export with onnxruntime and prints sizes, times,
peak memory and the verification figures. Not part of the test suite (minutes, several GB of memory).

    python benchmarks/export_large.py [--layers 24] [--hidden 1024] [--keep DIR]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--keep", type=Path, default=None, help="keep the folders here instead of a temp dir")
    args = parser.parse_args()

    from pyserini_diffret import load_model
    from pyserini_diffret.onnx_export.exporter import export
    from tests.real_arch import write_dream_folder

    root = args.keep or Path(tempfile.mkdtemp(prefix="diffret-export-large-"))
    try:
        source, target = root / "dream", root / "dream-onnx"
        started = time.perf_counter()
        write_dream_folder(source, layers=args.layers, hidden=args.hidden, heads=16, kv_heads=2,
                           intermediate=2816, shards=2)
        folder_bytes = sum(f.stat().st_size for f in source.iterdir())
        print(f"source folder: {gib(folder_bytes)} ({time.perf_counter() - started:.0f} s to write)", flush=True)
        started = time.perf_counter()
        result = export(source, target, precision="fp32", verify=True, overwrite=True, log=print)
        seconds = time.perf_counter() - started
        files = {p.name: p.stat().st_size for p in target.iterdir()}
        print(f"export: {seconds:.0f} s; files: " + ", ".join(f"{n} {gib(s)}" for n, s in sorted(files.items())))
        print(f"external data: {result.record.external_data}; peak RSS so far "
              f"{gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}")
        for side in result.report.sides:
            print(f"verify {side.side}: slot rel. error {side.slot_rel_error:.2e}, impact entries differing "
                  f"{side.impact_differing}/{side.impact_entries}")
        started = time.perf_counter()
        model = load_model(target)
        reps = model.encode_documents(["Aspirin reduces the risk of heart attack."])
        print(f"onnxruntime load + one document: {time.perf_counter() - started:.0f} s, "
              f"{reps.slots.shape[1]} slots of {reps.slots.shape[2]}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
