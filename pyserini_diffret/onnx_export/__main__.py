"""``python -m pyserini_diffret.onnx_export --model SRC --output DIR [options]``: export to an ONNX model folder."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pyserini_diffret.core.record import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pyserini_diffret.onnx_export",
        description="Export a DiffRetriever backbone (a local Hugging Face model folder) to a self-contained ONNX "
        "model folder: graph, tokenizer files and diffret_config.json. Load it with load_model(DIR) or "
        "--encoder DIR; it needs no source model.",
    )
    parser.add_argument("--model", required=True, metavar="SRC", help="Hugging Face model folder (or a registered name)")
    parser.add_argument("--output", required=True, metavar="DIR", help="new (or empty) folder for the export")
    parser.add_argument("--backbone", default="auto", choices=["auto", "mlm", "dream", "llada", "ar"],
                        help="backbone adapter (default: detected from config.json); 'ar' is refused with the reason")
    parser.add_argument("--k-query", type=int, metavar="N", help="default number of query slots stored in the config")
    parser.add_argument("--k-doc", type=int, metavar="N", help="default number of document slots stored in the config")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default); fp16 (for CUDA); int8 (dynamic quantisation, for CPU: ~2x faster, "
                        "activations quantised per tensor: check retrieval quality, BENCHMARKS.md); int8w (weight-only "
                        "8-bit, GPTQ-calibrated, float32 compute: vectors within ~1e-2 of fp32 at a quarter of the "
                        "size, about fp32 speed); int4w (weight-only 4-bit: smallest, least accurate)")
    parser.add_argument("--calibration", metavar="FILE|none",
                        help="int8w/int4w: texts to calibrate the GPTQ rounding on (a UTF-8 file, one text per line; "
                        "default: built-in texts), or 'none' to round to nearest")
    parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default 18, the minimum)")
    parser.add_argument("--verify", action="store_true",
                        help="compare the export with torch on sample texts; exit 1 when it misses the limits")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the model folder's own code (real Dream/LLaDA checkpoints need it)")
    parser.add_argument("--terms-per-slot", "--top-k", type=int, metavar="N", help="term weights kept per slot (built into the graph)")
    parser.add_argument("--max-query-length", type=int, metavar="N", help="query text tokens (config default)")
    parser.add_argument("--max-document-length", "--max-passage-length", type=int, metavar="N", help="document text tokens (config default)")
    parser.add_argument("--logit-shift", type=int, choices=[0, 1], help="read slot logits one position earlier (Dream)")
    parser.add_argument("--plain-attention", action="store_true",
                        help="trace attention as the model spells it out (default: fused MultiHeadAttention)")
    parser.add_argument("--no-fusions", action="store_true", help="skip onnxruntime.transformers graph fusions (skipped anyway above 2 GB)")
    parser.add_argument("--external-data", action="store_true",
                        help="keep weights in model.onnx.data even below 2 GB (always done above)")
    parser.add_argument("--device", default="cpu", help="device to trace on (cpu, cuda); default cpu")
    return parser


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pyserini_diffret.onnx_export.exporter import ExportError, VerificationFailed, export  # noqa: PLC0415

    overrides = {name: getattr(args, name) for name in ("terms_per_slot", "max_query_length", "max_document_length", "logit_shift")
                 if getattr(args, name) is not None}
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = export(
            args.model, args.output, backbone=args.backbone, k_query=args.k_query, k_doc=args.k_doc,
            precision=args.precision, opset=args.opset, verify=args.verify, trust_remote_code=args.trust_remote_code,
            calibration=args.calibration,
            overwrite=args.overwrite, fused_attention=not args.plain_attention, fusions=False if args.no_fusions else None,
            external_data=True if args.external_data else None, device=args.device, log=log, **overrides,
        )
    except VerificationFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ExportError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record, config = result.record, result.config
    print(f"exported {args.model} -> {result.path}")
    print(f"  backbone {config.backbone}, precision {record.precision}, opset {record.opset}, "
          f"attention {record.attention}, K query/doc {config.k_query}/{config.k_doc} (any K at run time), "
          f"top-k {record.terms_per_slot}, hidden {config.hidden_size}, vocab {config.vocab_size}")
    fusions = ", ".join(f"{k} x{v}" for k, v in sorted(record.fusions.items())) or "none"
    print(f"  fusions: {fusions}")
    for table in record.shared_embeddings:
        readers = [f"{table.get(key, 0)} {what}" for key, what in (("embedding_lookups", "embedding lookup(s)"),
                   ("head_row_reads", "LM-head row read(s)"), ("lm_heads", "whole-vocabulary LM head(s)")) if table.get(key)]
        print(f"  vocabulary table {'x'.join(map(str, table['shape']))}: stored once as {table['dtype']} (scales: "
              f"{table['scales']}), read by {', '.join(readers)}")
    if record.weight_only:
        scheme = record.weight_only
        calibration = scheme["calibration"]
        rounding = (f"GPTQ calibrated on {calibration['texts']} {calibration['source']} texts ({calibration['tokens']} "
                    f"tokens)" if calibration else "rounded to nearest")
        print(f"  weight-only: {scheme['matmul_weights']} MatMul weights in {scheme['bits']}-bit blocks of "
              f"{scheme['block_size']} with float16 scales, {rounding}; float32 compute")
    for note in record.notes:
        print(f"  note: {note}")
    print("  files:")
    total = 0
    for name, size in result.files:
        total += size
        print(f"    {name:<28}{_size(size):>10}")
    print(f"    {'total':<28}{_size(total):>10}")
    if result.report is not None:
        print(result.report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
