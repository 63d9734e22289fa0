"""The model folders of the reference-parity fixtures: built with ``tests/real_arch.py`` (the real Dream and
LLaDA layouts, tiny random weights), identified by a checksum of their weights. Shared by the recorder
(``tools/reference/record.py``) and the parity test, so both build the same folders."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

ARCHS = ("dream", "llada")


def build_folder(arch: str, path: Path, *, seed: int, layers: int, hidden: int) -> Path:
    """The folder ``tests/real_arch.py`` writes for ``arch`` with these sizes and seed."""
    from tests.real_arch import WRITERS

    return WRITERS[arch](Path(path), seed=seed, layers=layers, hidden=hidden)


def weights_checksum(folder: Path) -> str:
    """sha256 over the tensors of every ``*.safetensors`` file, by name: name, dtype, shape and raw bytes.
    Independent of how the files are laid out (shards, header order)."""
    from safetensors import safe_open

    tensors = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as handle:
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name]
        digest.update(json.dumps([name, str(value.dtype), list(value.shape)]).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def file_checksums(folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """sha256 of the folder's files (all of them, or ``names``)."""
    folder = Path(folder)
    files = [folder / n for n in names] if names is not None else sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


HEAD_WEIGHT = {"dream": "lm_head.weight", "llada": "model.transformer.ff_out.weight"}
STOP_TOKEN = {"dream": 151643, "llada": 126081}  # EOS (<|endoftext|>) of each tokenizer


def scale_head_row(folder: Path, arch: str, token_id: int, factor: float) -> None:
    """Multiply one row of the LM head by ``factor`` (float32, in place in ``model.safetensors``).

    Random weights almost never make a slot's argmax a special token, so the stop-token truncation would
    go untested: scaling the EOS row makes EOS the argmax at some slots (those where its logit is already
    positive and large), in a deterministic, seed-dependent pattern."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    file = Path(folder) / "model.safetensors"
    with safe_open(str(file), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    head = tensors[HEAD_WEIGHT[arch]].copy()
    head[token_id] = (head[token_id] * np.float32(factor)).astype(head.dtype)
    tensors[HEAD_WEIGHT[arch]] = head
    save_file(tensors, str(file), metadata=metadata)
