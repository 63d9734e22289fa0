"""Write the read-out settings of a released DiffRetriever checkpoint (or a zero-shot base) into its folder.

Pyserini's commands hand an encoder only a model name, so the settings travel in the folder, as
``diffret_config.json``:

    python examples/reproduce/settings.py DIR --backbone llada --k-query 1 --k-doc 1 --fine-tuned
    python examples/reproduce/settings.py DIR --backbone dream --k-query 4 --k-doc 16            # zero-shot

Zero-shot: the reference's defaults (RetrieverConfig.zero_shot: 256-token sequence budget, the "few" prompt
at every K, top-128 terms per slot, truncated impacts, stop-token truncation). --fine-tuned: the reference's
fine-tuned encode rules (rounded impacts, top-256 terms per slot, no stop-token truncation).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pyserini_diffret.core.config import PROMPT_VARIANTS, RetrieverConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the downloaded (merged) model folder")
    parser.add_argument("--backbone", choices=["dream", "llada"], required=True)
    parser.add_argument("--k-query", type=int, required=True)
    parser.add_argument("--k-doc", type=int, required=True)
    parser.add_argument("--fine-tuned", action="store_true")
    parser.add_argument("--prompt-variant", choices=PROMPT_VARIANTS, default="few")
    parser.add_argument("--sequence-budget", type=int, default=256, help="the reference's --max_length")
    args = parser.parse_args()
    if not (args.folder / "config.json").is_file():
        raise SystemExit(f"{args.folder}: no config.json; give the model folder")
    fine_tuned = dict(quantisation="round", terms_per_slot=256, stop_truncation=False, fine_tuned=True)
    config = RetrieverConfig.zero_shot(args.backbone, prompt_variant=args.prompt_variant, k_query=args.k_query,
                                       k_doc=args.k_doc, sequence_budget=args.sequence_budget,
                                       source=str(args.folder), **(fine_tuned if args.fine_tuned else {}))
    config.validate()
    print(f"wrote {config.save(args.folder)}")


if __name__ == "__main__":
    main()
