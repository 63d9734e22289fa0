"""``python -m pyserini_diffret.train``: fine-tune a backbone into a DiffRetriever encoder folder.

Examples::

    python -m pyserini_diffret.train --model BASE --data ../shared/data/scifact --output runs/ft   # BEIR, qrels/train.tsv
    python -m pyserini_diffret.train --model BASE --data train.jsonl --output runs/ft              # JSONL
    python -m pyserini_diffret.train adapt --corpus corpus.jsonl --model diffret --output runs/adapted  # no labels
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from pyserini_diffret.integration import setup
from pyserini_diffret.train.data import TrainingDataError
from pyserini_diffret.train.trainer import TrainConfig, train


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pyserini_diffret.train",
        description="Fine-tune a diffusion (or masked) LM into a DiffRetriever encoder with the paper's recipe: "
                    "MaxSim InfoNCE over slot vectors + sparse InfoNCE over content-filtered term weights, "
                    "in-batch and hard negatives.",
    )
    d = TrainConfig(model="", output="", data="")
    p.add_argument("--model", required=True, help="base model folder (Hugging Face) to fine-tune")
    p.add_argument("--data", required=True,
                   help="JSONL of {query, positives, negatives} or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--output", required=True, help="output folder: HF weights + diffret_config.json")
    p.add_argument("--backbone", choices=["mlm", "dream", "llada"], help="adapter (default: detected)")
    p.add_argument("--qrels", help="BEIR folder: judgements to train on (default qrels/train.tsv)")
    p.add_argument("--corpus", help="JSONL input: a BEIR corpus.jsonl to mine BM25 negatives from")
    p.add_argument("--k-query", type=int, default=d.k_query)
    p.add_argument("--k-doc", type=int, default=d.k_doc)
    p.add_argument("--max-query-length", type=int, default=d.max_query_length, help="query text tokens")
    p.add_argument("--max-document-length", "--max-passage-length", type=int, default=d.max_document_length, help="document text tokens")
    p.add_argument("--terms-per-slot", "--top-k", type=int, default=d.terms_per_slot, help="term weights kept per slot at search time")
    p.add_argument("--prompts", default=d.prompts, help="paper (default), compact, or a JSON file")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="queries per step")
    p.add_argument("--hard-negatives", type=int, default=d.hard_negatives, help="hard negatives per query per step")
    p.add_argument("--mine-negatives", type=int, default=d.mine_negatives, help="BM25 negatives kept per query")
    p.add_argument("--mine-depth", type=int, default=d.mine_depth, help="BM25 depth searched when mining")
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--learning-rate", "--lr", type=float, help="default 1e-4 with LoRA, 5e-5 otherwise")
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--temperature", type=float, default=d.temperature, help="dense InfoNCE temperature")
    p.add_argument("--sparse-weight", type=float, default=d.sparse_weight)
    p.add_argument("--lora", choices=["auto", "on", "off"], default=d.lora,
                   help="auto: LoRA for backbones over 300M parameters, full fine-tuning below")
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument("--precision", choices=["fp32", "bf16"], default=d.precision)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-steps", type=int, default=d.save_steps, help="checkpoint every N steps (0: each epoch)")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--dense-teacher", help="warm start: sentence encoder whose mean-pooled vectors the slots imitate")
    p.add_argument("--sparse-teacher", help="warm start: SPLADE-style masked LM (same vocabulary) for term weights, or 'bm25' "
                        "(BM25 statistics of the training corpus)")
    p.add_argument("--distill-steps", type=int, default=d.distill_steps,
                   help="first N steps train on the distillation loss only")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="weight of the distillation loss after those steps")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def adapt_parser() -> argparse.ArgumentParser:
    from pyserini_diffret.train.adapt import DEFAULTS  # noqa: PLC0415

    p = argparse.ArgumentParser(
        prog="python -m pyserini_diffret.train adapt",
        description="Adapt an encoder to your documents without queries or judgements: self-supervised pairs "
                    "(title -> text, a sentence -> the rest of its document), BM25 negatives from the same corpus, "
                    "the model's own starting vectors and the corpus' BM25 statistics as teachers; then an ONNX "
                    "export in --output (use it with --encoder OUTPUT). Resumes when run again.")
    p.add_argument("--corpus", required=True, help="JSON lines (BEIR corpus.jsonl or Pyserini {id, contents}), or a folder")
    p.add_argument("--model", default="diffret", help="'diffret' (embedded default), an encoder folder, or an export "
                                                      "with trainable weights")
    p.add_argument("--output", required=True, help="folder for the adapted model (export + trainable/ weights)")
    p.add_argument("--precision", default="int8", help="export precision (int8 for CPU, fp32, fp16 for CUDA...)")
    p.add_argument("--epochs", type=float, default=DEFAULTS["epochs"])
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--learning-rate", "--lr", type=float, default=DEFAULTS["learning_rate"])
    p.add_argument("--distill-weight", type=float, default=DEFAULTS["distill_weight"],
                   help="weight of the two teachers (own starting vectors, corpus BM25)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="start again in a folder that holds an adapted model")
    p.add_argument("--no-progress", action="store_true")
    return p


def adapt_main(argv: list[str]) -> int:
    from pyserini_diffret.onnx_export import ExportError  # noqa: PLC0415
    from pyserini_diffret.train.adapt import adapt  # noqa: PLC0415

    args = vars(adapt_parser().parse_args(argv))
    overrides = {k: args.pop(k) for k in ("epochs", "max_steps", "batch_size", "learning_rate", "distill_weight", "seed")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        adapt(args["corpus"], args["model"], args["output"], precision=args["precision"], overwrite=args["overwrite"],
              threads=args["threads"], progress=not args["no_progress"],
              log=lambda message: print(f"[adapt] {message}", flush=True), **overrides)
    except (TrainingDataError, FileNotFoundError, NotADirectoryError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["adapt"]:
        return adapt_main(argv[1:])
    args = vars(parser().parse_args(argv))
    args["progress"] = not args.pop("no_progress")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in args.items() if k in fields})
    try:
        result = train(config)
    except TrainingDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    last = result.losses[-1] if result.losses else {}
    print(f"saved {result.output} ({result.steps} steps, {result.seconds:.0f} s, last loss {last.get('loss', float('nan')):.4f})")
    return 0


if __name__ == "__main__":
    setup()  # Java 21+, offline guard, --encoder diffret: before Pyserini loads
    sys.exit(main())
