"""Shared test material for the workflow, encoder and command tests (built once per session).

- ``model_dir``: a tiny random BERT masked LM (tests/tiny_models.py) with a ``diffret_config.json``,
  so ``--encoder DIR`` needs no backbone flag and is recognised as ours by that file.
- ``plain_model_dir``: a copy in another folder (for the ``--encoder-class diffret`` route and comparisons).
- ``sample``: the shipped sample collection (BEIR layout) as ``(corpus, queries, qrels)``.
- ``encoded_sample``: the sample corpus encoded once by ``python -m pyserini_diffret.encode`` (subprocess).
Fixtures are cached at module level so that several test modules share one build.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_python

_cache: dict[str, object] = {}
ENCODE_OPTIONS = ["--batch-size", "8", "--chunk-size", "8", "--quiet"]


def _once(key, build):
    if key not in _cache:
        _cache[key] = build()
    return _cache[key]


def _build_model(root: Path) -> Path:
    from pyserini_diffret.core.config import RetrieverConfig
    from tests.tiny_models import make_mlm

    folder = make_mlm(root / "tiny-diffret-mlm")
    RetrieverConfig.zero_shot("mlm", max_document_length=64).save(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return _once("model", lambda: _build_model(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def plain_model_dir(model_dir, tmp_path_factory) -> Path:
    def build():
        target = tmp_path_factory.mktemp("plain") / "tiny-model"
        shutil.copytree(model_dir, target)
        return target
    return _once("plain", build)


@pytest.fixture(scope="session")
def sample():
    from pyserini_diffret.workflow.collection import find_beir_files
    from pyserini_diffret.workflow.run import sample_folder

    return find_beir_files(sample_folder())


def encode_command(corpus, output, model, *extra_input: str) -> list[str]:
    return ["-m", "pyserini_diffret.encode", "input", "--corpus", str(corpus), *extra_input,
            "output", "--embeddings", str(output), "encoder", "--encoder", str(model), *ENCODE_OPTIONS]


@pytest.fixture(scope="session")
def encoded_sample(model_dir, sample, tmp_path_factory) -> Path:
    def build():
        output = tmp_path_factory.mktemp("encoded") / "sample"
        run_python(*encode_command(sample[0], output, model_dir))
        return output
    return _once("encoded", build)


@pytest.fixture(scope="session")
def loaded_model(model_dir):
    from pyserini_diffret.shared import shared_model

    return shared_model(model_dir, "cpu")
