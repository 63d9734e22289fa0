"""Damaged or replaced files of an exported folder are found by their sha256, recorded at export time.

The check runs at load, once per file per process, and a per-user cache (keyed by the file's path, size,
times and inode) spares a later process from hashing an unchanged folder again.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from pyserini_diffret import load_model
from pyserini_diffret.core import record as record_module
from pyserini_diffret.core.config import CONFIG_NAME
from pyserini_diffret.core.record import GRAPH_NAME, RECORD_KEY, ModelFolderError
from pyserini_diffret.registry import packaged_model_dir

TEXTS = ["Aspirin reduces the risk of heart attack.", "Vitamin D deficiency is associated with fractures."]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test starts cold: a cache folder of its own, nothing remembered in this process."""
    monkeypatch.setenv("PYSERINI_DIFFRET_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setattr(record_module, "_VERIFIED", {})


@pytest.fixture
def hashed(monkeypatch):
    """The names of the files hashed, in order (every call to the hashing function)."""
    calls: list[str] = []
    real = record_module.file_sha256

    def counting(path):
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(record_module, "file_sha256", counting)
    return calls


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(folder) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())["extra"][RECORD_KEY]


@pytest.fixture
def settled(monkeypatch):
    """Treat files as settled at once (a real folder is loaded long after it was written; a copy made by the
    test was changed a moment ago, which keeps its digest out of the cache: see the test below)."""
    monkeypatch.setattr(record_module, "SETTLE_SECONDS", 0.0)


def test_export_records_a_checksum_of_every_file_it_wrote(onnx_dirs):
    for folder in onnx_dirs.values():
        checksums = _record(folder)["sha256"]
        written = {p.name for p in folder.iterdir() if p.is_file()} - {CONFIG_NAME}
        assert set(checksums) == written and GRAPH_NAME in written and "tokenizer_config.json" in written
        assert checksums == {name: _sha256(folder / name) for name in written}


def test_flipped_bytes_in_the_graph_are_found(onnx_copy):
    folder = onnx_copy()
    graph = folder / GRAPH_NAME
    data = bytearray(graph.read_bytes())
    size = len(data)
    middle = size // 2
    data[middle:middle + 8192] = np.random.default_rng(0).bytes(min(8192, size - middle))
    graph.write_bytes(bytes(data))
    assert graph.stat().st_size == size  # the size check alone cannot see it
    with pytest.raises(ModelFolderError, match=rf"{graph}: .*sha256.*damaged or replaced"):
        load_model(folder)


def test_a_changed_tokenizer_file_is_found(onnx_copy):
    folder = onnx_copy("dream")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["model_max_length"] = 7
    path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"tokenizer_config.json: .*damaged or replaced"):
        load_model(folder)


def test_a_missing_recorded_file_is_named(onnx_copy):
    folder = onnx_copy("dream")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match="incomplete export: tokenizer.json is missing"):
        load_model(folder)


def test_unchanged_folder_loads_and_is_hashed_once(onnx_copy, onnx_dirs, hashed, settled):
    folder = onnx_copy()
    recorded = set(_record(folder)["sha256"])
    first = load_model(folder)
    assert sorted(hashed) == sorted(recorded)  # every recorded file, once
    reference = load_model(onnx_dirs["mlm"]).encode_documents(TEXTS)
    np.testing.assert_array_equal(first.encode_documents(TEXTS).slots, reference.slots)
    hashed.clear()
    load_model(folder)  # same process: remembered
    assert hashed == []
    record_module._VERIFIED.clear()  # as a new process: the per-user cache answers
    load_model(folder)
    assert hashed == []
    cache = json.loads((record_module.checksum_cache_path()).read_text())
    assert str((folder / GRAPH_NAME).resolve()) in cache["files"]
    # a changed file is hashed again (and found): its times and size are part of the key
    graph = folder / GRAPH_NAME
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="damaged or replaced"):
        load_model(folder)
    assert hashed == [GRAPH_NAME]


def test_files_changed_a_moment_ago_are_not_remembered(onnx_copy, hashed):
    """A file written within the last seconds could change again without its time changing (coarse file
    system clocks): its digest is not cached, so the next load hashes it again."""
    folder = onnx_copy()
    load_model(folder)
    load_model(folder)
    assert hashed.count(GRAPH_NAME) == 2


def test_unusable_cache_only_costs_a_hash(onnx_copy, hashed, settled, monkeypatch, tmp_path):
    folder = onnx_copy()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("PYSERINI_DIFFRET_CACHE", str(blocker / "cache"))  # cannot be created
    load_model(folder)
    record_module._VERIFIED.clear()
    monkeypatch.setenv("PYSERINI_DIFFRET_CACHE", str(tmp_path / "garbled"))
    (tmp_path / "garbled").mkdir()
    record_module.checksum_cache_path().write_text("{not json")
    load_model(folder)
    assert hashed.count(GRAPH_NAME) == 2


def test_record_without_checksums_loads_with_sizes_only(onnx_copy):
    """A record without checksums (taken out by hand) still has the sizes checked."""
    folder = onnx_copy()
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    del data["extra"][RECORD_KEY]["sha256"]
    path.write_text(json.dumps(data))
    load_model(folder)
    graph = folder / GRAPH_NAME
    graph.write_bytes(graph.read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match="1000 bytes where the export wrote"):
        load_model(folder)


def test_checksum_names_stay_inside_the_folder(onnx_copy, tmp_path):
    folder = onnx_copy()
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    (tmp_path / "elsewhere").write_text("x")
    data["extra"][RECORD_KEY]["sha256"]["../elsewhere"] = _sha256(tmp_path / "elsewhere")
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="not a file name inside the folder"):
        load_model(folder)


def test_embedded_default_model_is_verified(hashed):
    folder = packaged_model_dir("diffret")
    if not (folder / CONFIG_NAME).is_file():
        pytest.skip("the default model is not built in this checkout (make default-model)")
    checksums = _record(folder)["sha256"]
    assert set(checksums) == {GRAPH_NAME, "tokenizer.json", "tokenizer_config.json"}
    assert checksums == {name: _sha256(folder / name) for name in checksums}
    load_model("diffret")
    assert sorted(hashed) == sorted(checksums)
