"""The export record: what an exported folder holds beyond ``RetrieverConfig``, and how it is checked.

It lives in ``diffret_config.json`` under ``extra["onnx"]`` (the config has ``runtime: "onnx"``). With it
and the tokenizer files a folder encodes without the source model: the slot layout (mask id, tail, pad,
start tokens, chat template or not) is rebuilt from it, and the settings baked into the graph (logit
shift, tail length, whether the zero-shot stop-token rule is built in) are compared with the config a caller
asks for. Cheap to import: no torch.

Checksums (from record format 3): the export records the sha256 of every file it wrote (graph, external data,
tokenizer files; not ``diffret_config.json``, which holds the record). ``verify_checksums`` checks them at
load, once per file per process; a per-user cache (``checksum_cache_path``) remembers a file's digest by its
path, size, modification and change times, device and inode, so a later process does not hash an unchanged
folder again. Records of formats 1-3 (graphs that read the LM head over the whole vocabulary) are refused
with a message saying how to export again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pyserini_diffret.core.prompts import SlotLayout

RECORD_KEY = "onnx"
# 4: the LM head read at the content ids (inputs content_ids, output content_scores; top-k on the host).
# 3 and earlier (sha256 came in 3) read it over the whole vocabulary: those graphs are exported again.
RECORD_FORMAT = 4
GRAPH_NAME = "model.onnx"
EXTERNAL_DATA_NAME = "model.onnx.data"
INPUT_NAMES = ("input_ids", "attention_mask", "slot_offsets", "content_ids", "stop_truncation")
OUTPUT_NAMES = ("slot_vectors", "content_scores")
PRECISIONS = ("fp32", "fp16", "int8", "int8w", "int4w")
WEIGHT_ONLY_PRECISIONS = ("int8w", "int4w")  # weight-only quantisation, float32 compute (weight_only.py)


class ModelFolderError(ValueError):
    """An exported model folder that cannot be used: incomplete, of another version, or damaged."""


@dataclass
class ExportRecord:
    precision: str
    opset: int
    terms_per_slot: int  # the setting at export (format 4: applied on the host, so it may be changed at load)
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
    # sha256 of every file the export wrote (names relative to the folder), checked at load; empty: none recorded
    sha256: dict[str, str] = field(default_factory=dict)
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
        if version in (1, 2, 3):
            raise ModelFolderError(
                f"{origin}: this graph was exported by an earlier pyserini-diffret (export record format {version}), "
                f"which read the LM head over the whole vocabulary; this version reads it at each text's own words "
                f"(format {RECORD_FORMAT}). Export the model again from its Hugging Face folder "
                f"(python -m pyserini_diffret.onnx_export --model HF_FOLDER --output DIR); a BERT export's weights "
                f"can be rebuilt from the graph with pyserini_diffret.onnx_export.recover.recover_weights"
            )
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
        if not isinstance(record.sha256, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in record.sha256.items()):
            raise ModelFolderError(f"{origin}: the export record's sha256 is not an object of file names and digests")
        for name in record.sha256:
            member_path(Path("."), name, origin)
        return record

    def files(self, folder: Path) -> list[tuple[Path, int | None]]:
        """The graph file(s) with their recorded sizes."""
        files = [(folder / self.graph, self.graph_bytes or None)]
        if self.external_data:
            files.append((folder / self.external_data, self.external_data_bytes))
        return files


# -- checksums ---------------------------------------------------------------------------------------------
CACHE_VARIABLE = "PYSERINI_DIFFRET_CACHE"  # a folder; default $XDG_CACHE_HOME/pyserini-diffret or ~/.cache/...
CACHE_FILE = "checksums.json"
CACHE_ENTRIES = 1024  # most recent files remembered
# A digest is remembered only for a file last changed at least this long ago: on file systems with coarse
# clocks a file changed again within the same tick would keep its size and times ("racy" entries).
SETTLE_SECONDS = 2.0
_HASH_BUFFER = 4 << 20
_VERIFIED: dict[tuple, str] = {}  # this process: (path, size, mtime_ns, ctime_ns, dev, ino) -> sha256


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_BUFFER)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def folder_checksums(folder: Path, names: list[str] | None = None, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of ``names`` (default: every file under ``folder`` but ``exclude``), by relative POSIX name."""
    if names is None:
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.relative_to(folder).as_posix() not in exclude)
    return {name: file_sha256(member_path(folder, name, str(folder))) for name in names}


def member_path(folder: Path, name: str, origin: str) -> Path:
    """``folder / name`` for a recorded name, which must stay inside the folder."""
    parts = PurePosixPath(name).parts
    if not name or "\\" in name or PurePosixPath(name).is_absolute() or any(part in ("..", ".") for part in parts) \
            or PurePosixPath(*parts).as_posix() != name:
        raise ModelFolderError(f"{origin}: the export record names {name!r}, which is not a file name inside the folder")
    return folder.joinpath(*parts)


def checksum_cache_path() -> Path:
    root = os.environ.get(CACHE_VARIABLE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pyserini-diffret")
    return Path(root) / CACHE_FILE


def verify_checksums(folder: Path, checksums: dict[str, str], origin: str) -> None:
    """Every recorded file is there and has its recorded sha256; ``ModelFolderError`` naming the file otherwise.

    A file is hashed once per process, and not again by a later process while its path, size, times, device
    and inode are those the per-user cache remembers (a file is only remembered once settled)."""
    cached: dict[str, list] | None = None
    learned: dict[str, list] = {}
    try:
        for name, expected in sorted(checksums.items()):
            file = member_path(folder, name, origin)
            if not file.is_file():
                raise ModelFolderError(f"{folder}: incomplete export: {name} is missing")
            path, key = str(file.resolve()), _stat_key(file.stat())
            digest = _VERIFIED.get((path, *key))
            if digest is None:
                if cached is None:
                    cached = _read_cache()
                entry = cached.get(path)
                if isinstance(entry, list) and entry[:-1] == key and isinstance(entry[-1], str):
                    digest = entry[-1]
                else:
                    digest = file_sha256(file)
                    after = file.stat()
                    if _stat_key(after) == key and _settled(after):
                        learned[path] = [*key, digest]
                    else:  # changed a moment ago, or while it was hashed: not remembered
                        key = None
                if key is not None:
                    _VERIFIED[(path, *key)] = digest
            if digest != expected.lower():
                raise ModelFolderError(
                    f"{file}: its sha256 differs from the one the export recorded: the file is damaged or replaced; "
                    "restore it or export the model again"
                )
    finally:
        if learned:
            _write_cache(learned)


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_dev, stat.st_ino]


def _settled(stat: os.stat_result) -> bool:
    return time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) >= SETTLE_SECONDS * 1e9


def _read_cache() -> dict[str, list]:
    try:
        data = json.loads(checksum_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == 1 else None
    return dict(files) if isinstance(files, dict) else {}


def _write_cache(learned: dict[str, list]) -> None:
    """Add ``learned`` to the per-user cache (best effort: a cache that cannot be written costs a hash later)."""
    path = checksum_cache_path()
    files = _read_cache()  # again: another process may have added entries meanwhile
    for name, entry in learned.items():
        files.pop(name, None)
        files[name] = entry  # most recent last
    files = {name: entry for name, entry in list(files.items())[-CACHE_ENTRIES:] if os.path.exists(name)}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": 1, "files": files}, separators=(",", ":")) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
