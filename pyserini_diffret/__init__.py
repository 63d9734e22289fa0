"""pyserini-diffret: DiffRetriever (diffusion-LM retrieval) encoders for Pyserini.

Importing this package changes nothing in the process (no environment variable, path or import hook),
and model code is imported lazily so that ``import pyserini_diffret`` stays cheap. Pyserini's Java side
and the ``diffret`` registration are set up by ``pyserini_diffret.integration.setup()``, which the
start-up hook and our commands call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "pyserini_diffret.model",
    "DiffRetriever": "pyserini_diffret.model",
    "Representations": "pyserini_diffret.core.representations",
}

if TYPE_CHECKING:
    from pyserini_diffret.core.representations import Representations
    from pyserini_diffret.model import DiffRetriever, load_model


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pyserini_diffret' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module_name), name)


__all__ = ["__version__", *_LAZY]
