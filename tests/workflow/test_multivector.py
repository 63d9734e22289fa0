"""Multi-vector (MaxSim) search: FAISS candidates + exact re-scoring against brute force."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pyserini_diffret.core.representations import maxsim
from pyserini_diffret.workflow.multivector import MultiVectorSearcher, SlotStore
from tests.workflow.fixtures import encoded_sample, loaded_model, model_dir, sample  # noqa: F401


def clustered_store(folder, n=3000, k=4, dim=32, topics=40, seed=0):
    """Unit slot vectors around topic centres (documents share topics, as real corpora do)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    doc_topics = rng.integers(0, topics, size=(n, k))
    slots = centres[doc_topics] + 0.6 * rng.standard_normal((n, k, dim)).astype(np.float32)
    slots /= np.linalg.norm(slots, axis=-1, keepdims=True)
    slots[rng.random((n, k)) < 0.1] = 0.0  # some truncated (all-zero) slots
    folder.mkdir(parents=True)
    slots.astype(np.float32).tofile(folder / "vectors.float32")
    (folder / "docid").write_text("".join(f"doc{i}\n" for i in range(n)))
    meta = {"count": n, "k": k, "dim": dim, "dtype": "float32", "vectors": "vectors.float32", "format": 1}
    (folder / "meta.json").write_text(json.dumps(meta))
    queries = centres[rng.integers(0, topics, size=(50, 4))] + 0.6 * rng.standard_normal((50, 4, dim))
    queries /= np.linalg.norm(queries, axis=-1, keepdims=True)
    queries[:, 3] = 0.0  # a truncated query slot
    return slots, queries.astype(np.float32)


def recall_at_10(searcher, queries, **kwargs):
    found = searcher.batch_search_slots(queries, 10)
    hits = [len({h.docid for h in got} & {h.docid for h in searcher.brute_force(q, 10)}) for got, q in zip(found, queries)]
    return sum(hits) / (10 * len(queries)), found


def test_candidates_then_exact_maxsim_match_brute_force(tmp_path):
    slots, queries = clustered_store(tmp_path / "slots")
    unchecked, _ = recall_at_10(MultiVectorSearcher(tmp_path / "slots", candidates=20, exact_top=0), queries)
    assert unchecked < 0.9  # few candidates alone miss documents ...
    searcher = MultiVectorSearcher(tmp_path / "slots", candidates=20)
    recall, found = recall_at_10(searcher, queries)
    assert recall == 1.0  # ... the bound check deepens the search until the top 10 are exact
    # scores are exact MaxSim, sorted
    q = queries[0]
    expected = maxsim(q, slots)
    for hit in found[0]:
        assert hit.score == pytest.approx(float(expected[int(hit.docid[3:])]), rel=1e-5)
    assert [h.score for h in found[0]] == sorted((h.score for h in found[0]), reverse=True)
    brute = searcher.brute_force(q, 5)
    assert [h.docid for h in brute] == [f"doc{i}" for i in np.lexsort((np.arange(len(slots)), -expected))[:5]]


def test_maxsim_search_on_an_encoded_corpus(encoded_sample, loaded_model, sample):
    from pyserini_diffret.workflow.collection import read_topics

    store = SlotStore(encoded_sample / "slots")
    assert store.count == 40 and store.k == loaded_model.k_doc and store.dim == loaded_model.hidden_size
    queries = loaded_model.encode_queries(list(read_topics(sample[1]).values())).slots
    searcher = MultiVectorSearcher(encoded_sample / "slots", candidates=5)
    recall, _ = recall_at_10(searcher, queries)
    assert recall == 1.0
