"""ONNX export of DiffRetriever backbones (``export_model``; CLI: ``python -m pyserini_diffret.onnx_export``).

The exported folder runs with ``load_model(DIR)`` on onnxruntime (``pyserini_diffret.runtimes.onnx_runtime``);
``compare_models`` measures an export against its torch source (``--verify`` and the tests use it).
"""
from __future__ import annotations

from typing import Any

from pyserini_diffret.core.record import PRECISIONS, ExportRecord, ModelFolderError

_LAZY = {
    "export_model": "pyserini_diffret.onnx_export.exporter",
    "export": "pyserini_diffret.onnx_export.exporter",
    "ExportError": "pyserini_diffret.onnx_export.exporter",
    "ExportResult": "pyserini_diffret.onnx_export.exporter",
    "VerificationFailed": "pyserini_diffret.onnx_export.exporter",
    "compare_models": "pyserini_diffret.onnx_export.verify",
    "VerificationReport": "pyserini_diffret.onnx_export.verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyserini_diffret.onnx_export' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)


__all__ = ["PRECISIONS", "ExportRecord", "ModelFolderError", *_LAZY]
