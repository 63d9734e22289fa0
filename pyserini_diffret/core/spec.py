"""``ModelSpec``: everything the engine knows about a model before it runs it.

Its settings (``RetrieverConfig``: K, text lengths, read-out), its slot layout (``SlotLayout``) and its
limits (maximum positions, hidden size, vocabulary size), its precision and the runtime that runs it.
A Hugging Face folder gets its spec from its backbone adapter (``Backbone.spec``); an exported folder
from its export record (``ModelSpec.from_export``). The engine checks every text length and K against
the spec before any runtime is called, whatever the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.core.prompts import SIDES, PromptBuilder, SlotLayout
from pyserini_diffret.core.record import RECORD_KEY, ExportRecord, ModelFolderError, verify_checksums

RUNTIMES = ("torch", "onnx")
ONE_PASS_BACKBONES = ("mlm", "dream", "llada")  # the K slots come from one pass: exportable as one graph


@dataclass
class ModelSpec:
    settings: RetrieverConfig
    layout: SlotLayout
    hidden_size: int
    vocab_size: int
    max_positions: int | None  # the position table's size; None: no hard limit (rotary decoders)
    precision: str  # fp32, bf16, fp16 (torch dtypes and exports), int8, int8w, int4w (exports)
    runtime: str  # "torch" (a Hugging Face folder) or "onnx" (an exported graph)
    source: str = ""
    record: ExportRecord | None = None  # exports only

    @classmethod
    def from_export(cls, path: Path, settings: RetrieverConfig) -> "ModelSpec":
        """The spec of an exported folder; its files are checked against the record (clear errors)."""
        record = read_record(path, settings)
        return cls(settings, record.slot_layout(), settings.hidden_size, settings.vocab_size, record.max_positions,
                   record.precision, "onnx", str(path), record)

    def check(self, prompts: PromptBuilder) -> None:
        """Fail before any runtime call when a text could not fit: K, lengths and the position table."""
        self.settings.validate()
        if not self.max_positions:
            return
        for side in SIDES:
            k = self.settings.slots(side)
            needed = prompts.sequence_length_bound(side, k)
            if needed > self.max_positions:
                setting = f"max_{side}_length" if self.settings.sequence_budget is None else \
                    f"max_{side}_length or sequence_budget"
                raise ValueError(
                    f"{self.source or 'model'}: a {side} can take {needed} tokens (prompt, "
                    f"{prompts.max_text_length(side, k)} text tokens, K={k} slots, tail) but the model has "
                    f"{self.max_positions} positions; lower {setting} or K"
                )


def read_record(path: Path, settings: RetrieverConfig) -> ExportRecord:
    """The export record of ``path``, checked against the folder's files (sizes, then checksums) and the
    requested settings."""
    origin = str(path / CONFIG_NAME)
    if settings.runtime != "onnx" or RECORD_KEY not in settings.extra:
        if any(path.glob("*.onnx")):
            raise ModelFolderError(f"{origin}: not an ONNX export config (runtime {settings.runtime!r}, no export record)")
        raise ModelFolderError(
            f"{path}: not an exported ONNX model folder (no graph, no export record); export it first with "
            f"`python -m pyserini_diffret.onnx_export --model {path} --output DIR`"
        )
    record = ExportRecord.from_dict(settings.extra[RECORD_KEY], origin)
    for name in ("hidden_size", "vocab_size"):
        if not isinstance(getattr(settings, name), int):
            raise ModelFolderError(f"{origin}: {name} is missing; an export always records it")
    for file, size in record.files(path):
        if not file.is_file():
            raise ModelFolderError(f"{path}: incomplete export: {file.name} is missing")
        actual = file.stat().st_size
        if size is not None and actual != size:
            raise ModelFolderError(
                f"{file}: {actual} bytes where the export wrote {size}: the file is damaged, truncated or replaced"
            )
    # Contents: the sha256 of every file the export wrote.
    verify_checksums(path, record.sha256, origin)
    # Settings built into the graph cannot be overridden at load time.
    if settings.logit_shift != record.logit_shift:
        raise ValueError(
            f"{path}: logit_shift={record.logit_shift} is built into the exported graph; "
            f"logit_shift={settings.logit_shift!r} needs a new export (python -m pyserini_diffret.onnx_export ... "
            "with that setting)"
        )
    if settings.stop_truncation and "stop_truncation" not in record.inputs:
        raise ValueError(
            f"{path}: stop_truncation=True needs the stop-token rule in the graph, and this export was made "
            "without it (its settings had stop_truncation=False); export again with stop_truncation=True"
        )
    if settings.backbone not in ONE_PASS_BACKBONES:
        raise ModelFolderError(f"{path}: backbone {settings.backbone!r} cannot run from an ONNX graph")
    return record
