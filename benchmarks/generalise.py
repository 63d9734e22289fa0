"""Issue 13, item 1: does weight interpolation toward the warm start make the default model generalise?

The default model's build (``make default-model``) first trains only toward its teachers (MiniLM's own
mean-pooled vectors, BM25 weights) for ``distill_steps`` steps, then on SciFact train judgements. This script
mixes the weights of the finished model with those of an early checkpoint of the same run
(``anchor + alpha * (fine_tuned - anchor)``, WiSE-FT) and scores each mix, in memory (torch, float32), on the
collections given. Cranfield is the out-of-domain *development* collection: choices are made on it, never on
SciFact test.

    python benchmarks/generalise.py --work .cache/default-model --anchor-step 40 --alphas 0 0.25 0.5 0.75 1 \\
        --collections ../shared/data/cranfield
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def score(model_dir: Path, folder: Path, threads: int) -> dict[str, dict[str, float]]:
    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.train import evaluate as ev  # noqa: PLC0415
    from pyserini_diffret.train.data import read_corpus, read_qrels, read_queries  # noqa: PLC0415

    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    model = load_model(model_dir)
    corpus = read_corpus(folder / "corpus.jsonl")
    metrics, _ = ev.evaluate_model(model, corpus, read_queries(folder / "queries.jsonl"),
                                   read_qrels(folder / "qrels" / "test.tsv"))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "default-model",
                        help="the default model's build folder (fine-tuned/ and its checkpoints)")
    parser.add_argument("--anchor-step", type=int, default=40, help="checkpoint step to interpolate toward")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--collections", type=Path, nargs="+", default=[REPO.parent / "shared" / "data" / "cranfield"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / ".cache" / "generalise.json")
    args = parser.parse_args(argv)

    from pyserini_diffret.train.convert import interpolate  # noqa: PLC0415

    fine_tuned = args.work / "fine-tuned"
    anchor = fine_tuned / "checkpoints" / f"step-{args.anchor_step:06d}"
    if not anchor.is_dir():
        raise SystemExit(f"{anchor}: no such checkpoint (build with --keep-checkpoints 20)")
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    for alpha in args.alphas:
        mixed = interpolate(anchor, fine_tuned, alpha, args.work / "interpolated" / f"step{args.anchor_step}-a{alpha:g}")
        for folder in args.collections:
            key = f"step{args.anchor_step} alpha {alpha:g} {folder.name}"
            if key in results:
                continue
            started = time.time()
            metrics = score(mixed, folder, args.threads)
            results[key] = {name: m["ndcg@10"] for name, m in metrics.items()}
            results[key]["seconds"] = round(time.time() - started, 1)
            args.output.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{key}: " + ", ".join(f"{n} {v:.4f}" for n, v in results[key].items() if n != "seconds"), flush=True)
    print("\n| anchor | alpha | collection | sparse | dense single | dense multi | hybrid |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        step, _, alpha, name = key.split(" ")
        print(f"| {step} | {alpha} | {name} | {r['sparse']:.4f} | {r['dense-single']:.4f} | {r['dense-multi']:.4f} "
              f"| {r['hybrid']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
