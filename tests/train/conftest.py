"""Toy training data for the fine-tuning tests: tiny random models (tests/tiny_models.py), CPU, seconds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

TOY = [
    ("what reduces heart attacks", "Aspirin reduces the risk of heart attack in adults with diabetes.",
     "Airflow over a swept wing changes the boundary layer transition point."),
    ("bone fractures vitamin", "Vitamin D deficiency is associated with bone fractures and weak muscles.",
     "Supersonic flow produces shock waves that heat the surface of the aircraft."),
    ("swept wing airflow", "Airflow over a swept wing changes the boundary layer transition point.",
     "Protein folding determines the function of enzymes inside the cell."),
    ("shock waves supersonic", "Supersonic flow produces shock waves that heat the surface of the aircraft.",
     "Running, jumping and swimming are exercises that improve cardiovascular health."),
    ("enzyme protein folding", "Protein folding determines the function of enzymes inside the cell.",
     "The quick brown fox jumps over the lazy dog."),
    ("exercise cardiovascular health", "Running, jumping and swimming are exercises that improve cardiovascular health.",
     "Vitamin D deficiency is associated with bone fractures and weak muscles."),
    ("fox dog", "The quick brown fox jumps over the lazy dog.",
     "Aspirin reduces the risk of heart attack in adults with diabetes."),
    ("passage retrieval task", "A query asks for documents; a passage answers it in a retrieval task.",
     "The quick brown fox jumps over the lazy dog."),
]


@pytest.fixture
def toy_jsonl(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    with path.open("w") as handle:
        for query, positive, negative in TOY:
            handle.write(json.dumps({"query": query, "positives": [positive], "negatives": [negative]}) + "\n")
    return path


@pytest.fixture
def toy_beir(tmp_path) -> Path:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = sorted({t for _, p, n in TOY for t in (p, n)})
    ids = {text: f"d{i}" for i, text in enumerate(docs)}
    with (folder / "corpus.jsonl").open("w") as handle:
        for text, docid in ids.items():
            handle.write(json.dumps({"_id": docid, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as handle:
        for i, (query, _, _) in enumerate(TOY):
            handle.write(json.dumps({"_id": f"q{i}", "text": query}) + "\n")
    with (folder / "qrels" / "train.tsv").open("w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for i, (_, positive, _) in enumerate(TOY):
            handle.write(f"q{i}\t{ids[positive]}\t1\n")
    return folder
