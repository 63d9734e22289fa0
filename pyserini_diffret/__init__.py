"""pyserini-diffret: DiffRetriever (diffusion-LM retrieval) encoders for Pyserini.

Importing this package, before Pyserini or pyjnius, makes Pyserini's Java side work on this machine
(a Java 21+ runtime, see ``_java``) and lets Pyserini import offline. Model code is imported lazily so
that ``import pyserini_diffret`` stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyserini_diffret._java import configure_java
from pyserini_diffret.integration import install as _install_integration

__version__ = "0.1.0"

configure_java()
_install_integration()

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


__all__ = ["__version__", "configure_java", *_LAZY]
