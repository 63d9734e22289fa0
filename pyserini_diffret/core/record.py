"""The export record: what an exported folder holds beyond ``RetrieverConfig``, and how it is checked.

It lives in ``diffret_config.json`` under ``extra["onnx"]`` (the config has ``runtime: "onnx"``). With it
and the tokenizer files a folder encodes without the source model: the slot layout (mask id, tail, pad,
start tokens, chat template or not) is rebuilt from it, and the settings baked into the graph (top-k,
logit shift, tail length) are compared with the config a caller asks for. Cheap to import: no torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyserini_diffret.core.prompts import SlotLayout

RECORD_KEY = "onnx"
RECORD_FORMAT = 2  # format 1 called terms_per_slot top_k; it still loads
GRAPH_NAME = "model.onnx"
EXTERNAL_DATA_NAME = "model.onnx.data"
INPUT_NAMES = ("input_ids", "attention_mask", "slot_offsets", "content_mask", "stop_truncation")
OUTPUT_NAMES = ("slot_vectors", "term_weights")
PRECISIONS = ("fp32", "fp16", "int8", "int8w", "int4w")
WEIGHT_ONLY_PRECISIONS = ("int8w", "int4w")  # weight-only quantisation, float32 compute (weight_only.py)


class ModelFolderError(ValueError):
    """An exported model folder that cannot be used: incomplete, of another version, or damaged."""


@dataclass
class ExportRecord:
    precision: str
    opset: int
    terms_per_slot: int  # baked into the graph (per-slot top-k)
    logit_shift: int  # baked into the graph
    tail_length: int  # baked into the graph (slot positions are counted from the end)
    layout: dict[str, Any]  # SlotLayout fields
    graph: str = GRAPH_NAME
    graph_bytes: int = 0
    external_data: str | None = None
    external_data_bytes: int | None = None
    attention: str = "fused"  # "fused": MultiHeadAttention nodes; "plain": as traced
    fusions: dict[str, int] = field(default_factory=dict)  # onnxruntime.transformers fusions applied
    notes: list[str] = field(default_factory=list)
    max_positions: int | None = None  # position table size (masked LMs); None: no hard limit
    model_type: str = ""
    inputs: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    outputs: list[str] = field(default_factory=lambda: list(OUTPUT_NAMES))
    versions: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] | None = None
    # int8: tied input-embedding/LM-head tables stored once, as int8 with per-row scales (tied.SharedTable);
    # int8w/int4w: stored once in 8/4-bit blocks with float16 scales (weight_only.py)
    shared_embeddings: list[dict[str, Any]] = field(default_factory=list)
    # int8w/int4w: the weight-only scheme (bits, block size, scales, rounding, calibration; WeightOnlyResult)
    weight_only: dict[str, Any] | None = None
    format: int = RECORD_FORMAT

    def slot_layout(self) -> SlotLayout:
        layout = self.layout
        return SlotLayout(
            chat_template=bool(layout["chat_template"]),
            mask_id=None if layout["mask_id"] is None else int(layout["mask_id"]),
            tail_ids=tuple(int(i) for i in layout["tail_ids"]),
            pad_id=int(layout["pad_id"]),
            start_ids=tuple(int(i) for i in layout.get("start_ids", ())),
        )

    @staticmethod
    def layout_dict(layout: SlotLayout) -> dict[str, Any]:
        return {
            "chat_template": layout.chat_template,
            "mask_id": layout.mask_id,
            "tail_ids": list(layout.tail_ids),
            "pad_id": layout.pad_id,
            "start_ids": list(layout.start_ids),
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> "ExportRecord":
        if not isinstance(data, dict):
            raise ModelFolderError(f"{origin}: the export record (extra.{RECORD_KEY}) is not an object")
        version = data.get("format")
        if version == 1 and "top_k" in data:
            data = {("terms_per_slot" if key == "top_k" else key): value for key, value in data.items()}
            data["format"] = version = RECORD_FORMAT
        if version != RECORD_FORMAT:
            raise ModelFolderError(
                f"{origin}: ONNX export record format {version!r} is not supported by this version of "
                f"pyserini-diffret (expected {RECORD_FORMAT}); export the model again"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFolderError(f"{origin}: unknown keys in the export record: {unknown}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ModelFolderError(f"{origin}: the export record lacks {missing}")
        record = cls(**data)
        if record.precision not in PRECISIONS:
            raise ModelFolderError(f"{origin}: unknown precision {record.precision!r} (one of {PRECISIONS})")
        layout_missing = [k for k in ("chat_template", "mask_id", "tail_ids", "pad_id") if k not in record.layout]
        if layout_missing:
            raise ModelFolderError(f"{origin}: the export record's layout lacks {layout_missing}")
        if record.layout["mask_id"] is None:
            raise ModelFolderError(f"{origin}: the export record has no mask id; only one-pass backbones export")
        return record

    def files(self, folder: Path) -> list[tuple[Path, int | None]]:
        """The graph file(s) with their recorded sizes."""
        files = [(folder / self.graph, self.graph_bytes or None)]
        if self.external_data:
            files.append((folder / self.external_data, self.external_data_bytes))
        return files
