"""BEIR training folders: examples from the train qrels, hard negatives mined with Pyserini BM25."""
from __future__ import annotations

from pyserini_diffret.train import TrainConfig, train
from pyserini_diffret.train.data import load_examples, mine_bm25_negatives


def test_bm25_mining_never_returns_a_positive(toy_beir, tmp_path):
    examples, corpus = load_examples(toy_beir)
    assert len(examples) == 8 and all(len(e.positives) == 1 for e in examples)
    for e in examples:  # words from five documents: every query now matches several
        e.query += " supersonic protein aspirin vitamin fox"
    mine_bm25_negatives(examples, corpus, tmp_path / "index", depth=10, count=3)
    assert all(0 < len(e.negatives) <= 3 for e in examples)
    for e in examples:
        assert not set(e.negatives) & set(e.positives)
    assert (tmp_path / "index" / ".complete").is_file()


def test_training_from_a_beir_folder_mines_negatives(tiny_model_dirs, toy_beir, tmp_path):
    result = train(TrainConfig(model=str(tiny_model_dirs["mlm"]), output=str(tmp_path / "out"), data=str(toy_beir),
                               backbone="mlm", batch_size=4, hard_negatives=2, mine_depth=10, k_query=2, k_doc=2,
                               max_document_length=24, max_query_length=12, max_steps=2, progress=False))
    assert len(result.losses) == 2
    assert any((tmp_path / "out" / "bm25-index").iterdir())
