"""Fixtures for the backbone adapter tests: adapters loaded directly (no ``load_model``)."""
from __future__ import annotations

import pytest
import torch

from pyserini_diffret.backbones import BACKBONES


def _load(name: str, path, dtype: torch.dtype = torch.float32, **kwargs):
    """``<Adapter>.load`` on a tiny folder, as the engine calls it (no remote code)."""
    return BACKBONES[name].load(path, mask_token=None, dtype=dtype, trust_remote_code=False, **kwargs)


@pytest.fixture(scope="session")
def load_adapter():
    """``load_adapter(name, path, dtype=torch.float32)``: a fresh adapter, for tests that change it."""
    return _load


@pytest.fixture(scope="session")
def adapters(tiny_model_dirs):
    """One loaded adapter per family, shared by the tests: tests that change an adapter load their own."""
    return {name: _load(name, path) for name, path in tiny_model_dirs.items()}
