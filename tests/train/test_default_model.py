"""The embedded default model ``diffret``: present, small, documented, and it retrieves."""
from __future__ import annotations

import numpy as np
import pytest

from pyserini_diffret.registry import packaged_model_dir

FOLDER = packaged_model_dir("diffret")
pytestmark = pytest.mark.skipif(not (FOLDER / "diffret_config.json").is_file(),
                                reason="the default model is not built in this checkout (make default-model)")

DOCS = [
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "Vitamin D deficiency is associated with bone fractures and weak muscles in older adults.",
    "Supersonic flow over a swept wing produces shock waves and boundary layer separation.",
    "Protein misfolding causes amyloid aggregates in neurodegenerative disease.",
]
QUERIES = ["does aspirin prevent heart attacks", "vitamin d and fractures", "shock waves on wings",
           "amyloid protein aggregation"]


def test_size_card_and_config():
    from pyserini_diffret.core.config import RetrieverConfig

    size = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024
    card = (FOLDER / "MODEL_CARD.md").read_text()
    for needed in ("all-MiniLM-L6-v2", "MIT", "SciFact", "seed", "nDCG@10"):
        assert needed in card
    config = RetrieverConfig.load(FOLDER)
    assert config.runtime == "onnx" and config.fine_tuned and not config.stop_truncation


def test_each_query_finds_its_document_in_every_channel():
    from pyserini_diffret import load_model
    from pyserini_diffret.core.representations import maxsim

    model = load_model("diffret")
    docs = model.encode_documents(DOCS)
    queries = model.encode_queries(QUERIES)
    dense = queries.dense @ docs.dense.T
    assert list(dense.argmax(axis=1)) == [0, 1, 2, 3]
    multi = np.stack([maxsim(q, docs.slots) for q in queries.slots])
    assert list(multi.argmax(axis=1)) == [0, 1, 2, 3]
    sparse = np.array([[sum(w * d.get(t, 0) for t, w in q.items()) for d in docs.weights] for q in queries.weights])
    assert list(sparse.argmax(axis=1)) == [0, 1, 2, 3]
