"""Exports shared by tests/onnx_export and tests/runtimes: each model is exported once per test session.

Both folders' conftest.py import the fixtures from here; the module-level cache keeps a second
definition of the session fixture from exporting again.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FAMILIES = ("mlm", "dream", "llada")
_CACHE: dict[str, Path] = {}


def _export(tmp_path_factory, key: str, source: Path, **options) -> Path:
    if key not in _CACHE:
        from pyserini_diffret.onnx_export import export_model

        out = tmp_path_factory.mktemp("onnx-exports") / key
        _CACHE[key] = export_model(source, out, **options)
    return _CACHE[key]


@pytest.fixture(scope="session")
def onnx_dirs(tiny_model_dirs, tmp_path_factory) -> dict[str, Path]:
    """fp32 exports of the tiny random model of each one-pass family (default settings)."""
    return {name: _export(tmp_path_factory, name, tiny_model_dirs[name], backbone=name) for name in FAMILIES}


@pytest.fixture(scope="session")
def splade_onnx_dir(splade_tiny_dir, tmp_path_factory) -> Path:
    return _export(tmp_path_factory, "splade-tiny", splade_tiny_dir)


@pytest.fixture
def onnx_copy(onnx_dirs, tmp_path):
    """A private copy of an export, for tests that damage it."""

    def copy(name: str = "mlm") -> Path:
        target = tmp_path / f"{name}-copy"
        shutil.copytree(onnx_dirs[name], target)
        return target

    return copy
