"""Run a function right after a given module has been imported (or now, if it already is).

Python has no post-import hook in the standard library; this is the smallest meta-path finder that
delegates to the normal finders and wraps the loader's ``exec_module``. It also lets a patch rewrite a
module's source before it is compiled, which is the only way to reach code under
``if __name__ == "__main__":`` of modules run with ``python -m``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Callable

ModulePatch = Callable[[ModuleType], None]
SourcePatch = Callable[[str], str]

_after: dict[str, list[ModulePatch]] = {}
_source: dict[str, list[SourcePatch]] = {}
_local = threading.local()


def after_import(module_name: str, patch: ModulePatch) -> None:
    """Call ``patch(module)`` once ``module_name`` has executed; at once if it already has."""
    module = sys.modules.get(module_name)
    if module is not None:
        patch(module)
        return
    _after.setdefault(module_name, []).append(patch)


def rewrite_source(module_name: str, patch: SourcePatch) -> None:
    """Let ``patch`` rewrite the source of ``module_name`` before it is compiled (also for ``-m`` runs)."""
    _source.setdefault(module_name, []).append(patch)


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    """A source loader that applies source rewrites and post-execution patches."""

    def source_to_code(self, data, path, *, _optimize=-1):  # type: ignore[override]
        patches = _source.get(self.name, ())
        if patches:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            for patch in patches:
                text = patch(text)
            data = text
        return super().source_to_code(data, path)

    def get_code(self, fullname):  # type: ignore[override]
        if _source.get(fullname):
            # Bypass the bytecode cache: the cached code is the unpatched module.
            source = self.get_source(fullname)
            return self.source_to_code(source, self.get_filename(fullname))
        return super().get_code(fullname)

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        for patch in _after.pop(module.__name__, ()):
            patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _after and fullname not in _source:
            return None
        if getattr(_local, "busy", False):
            return None
        _local.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _local.busy = False
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _PatchingLoader(fullname, spec.origin)
        return spec


_finder = _Finder()


def install_import_hook() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
