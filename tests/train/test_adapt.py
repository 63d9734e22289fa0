"""``train adapt``: pseudo-queries, packed trainable weights, the self teacher, the command end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pyserini_diffret import load_model
from pyserini_diffret.train import TrainConfig, TrainingDataError, train
from pyserini_diffret.train import adapt as adapt_module
from pyserini_diffret.train.__main__ import main as train_main
from pyserini_diffret.train.adapt import adapt, pseudo_queries, split_sentences

DOCS = [
    ("d1", "Aspirin and heart attacks in adults", "Aspirin reduces the risk of heart attack. It thins the blood. "
     "Adults with diabetes were studied for ten years."),
    ("d2", "Swept wings", "Airflow over a swept wing changes the transition point. Shock waves form at high speed."),
    ("d3", None, "Protein folding determines the function of enzymes inside the cell. Misfolded proteins clump."),
    ("d4", "Bone health and vitamin D levels", "Vitamin D deficiency is associated with bone fractures. "
     "Muscles weaken too. Sunlight helps the skin make it."),
    ("d5", "", "One sentence only, with enough words in it."),
]
SMALL = dict(k_query=2, k_doc=4, max_query_length=12, max_document_length=24)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    with path.open("w") as handle:
        for docid, title, text in DOCS:
            handle.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    return path


@pytest.fixture
def start(tiny_model_dirs, corpus, tmp_path):
    """A fine-tuned tiny encoder (two steps), as a user's starting model."""
    out = tmp_path / "start"
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": t or x[:20], "positives": [x]}) + "\n" for _, t, x in DOCS))
    train(TrainConfig(model=str(tiny_model_dirs["mlm"]), output=str(out), data=str(data), backbone="mlm", batch_size=4,
                      hard_negatives=0, max_steps=2, progress=False, threads=1, **SMALL))
    return out


def test_sentences_split_at_ends_in_any_case():
    assert split_sentences("A b. C d! e. F? 3 g.") == ["A b.", "C d!", "e.", "F?", "3 g."]
    assert split_sentences("flow over a wing . the results agree.x") == ["flow over a wing .", "the results agree.x"]


def test_pseudo_queries_titles_and_inverse_cloze():
    examples = pseudo_queries(DOCS, seed=1)
    kinds = {e.query_id for e in examples}
    assert {"d1#title", "d4#title", "d1#ict", "d2#ict", "d3#ict", "d4#ict"} <= kinds
    assert "d2#title" not in kinds  # two-word title
    assert not any(e.query_id.startswith("d5") for e in examples)  # one sentence, no title
    title = next(e for e in examples if e.query_id == "d1#title")
    assert title.query == DOCS[0][1] and title.positives == [DOCS[0][2]] and title.positive_ids == ["d1"]
    for e in examples:
        if e.query_id.endswith("#ict"):
            docid = e.query_id.split("#")[0]
            assert e.query in dict((d, x) for d, _, x in DOCS)[docid]
            assert e.positive_ids == [docid]
    again = pseudo_queries(DOCS, seed=1)
    assert [(e.query, e.positives) for e in again] == [(e.query, e.positives) for e in examples]


def test_inverse_cloze_usually_removes_the_sentence():
    docs = [(f"d{i}", None, "First sentence here now. Second sentence is here. Third one is also here.")
            for i in range(200)]
    removed = [e.query not in e.positives[0] for e in pseudo_queries(docs, seed=3)]
    assert 0.8 < np.mean(removed) < 0.97


def test_self_teacher_targets_are_the_start_models_mean_slot(start):
    from pyserini_diffret.core.config import RetrieverConfig
    from pyserini_diffret.core.prompts import PromptBuilder
    from pyserini_diffret.model import load_backbone
    from pyserini_diffret.train.teachers import SelfTeacher

    settings = RetrieverConfig.load(start)
    adapter = load_backbone(start, settings)
    builder = PromptBuilder(adapter.tokenizer, settings, adapter.layout)
    teacher = SelfTeacher(adapter, builder, settings, len(adapter.layout.tail_ids), torch.device("cpu"))
    texts = ["Aspirin reduces the risk of heart attack.", "wings"]
    got = teacher.batch(texts, 24, torch.device("cpu"), side="document").numpy()
    slots = load_model(start).encode_documents(texts).slots
    slots = slots / np.linalg.norm(slots, axis=-1, keepdims=True)
    mean = slots.mean(axis=1)
    expected = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
    assert np.allclose(got, expected, atol=1e-5)
    with torch.no_grad():  # the copy is frozen: training the student leaves the targets alone
        next(adapter.parameters()).add_(1.0)
    teacher.cache.clear()
    assert np.allclose(teacher.batch(texts, 24, torch.device("cpu"), side="document").numpy(), expected, atol=1e-5)


def test_adapt_end_to_end_then_from_its_own_export(start, corpus, tmp_path):
    out = tmp_path / "adapted"
    lines = []
    adapt(corpus, start, out, precision="fp32", max_steps=3, threads=1, progress=False, log=lines.append)
    model = load_model(out)
    assert model.spec.runtime == "onnx"
    texts = ["aspirin and the heart", "Shock waves form at high speed."]
    reps = model.encode_documents(texts)
    torch_reps = load_model(out / "trainable").encode_documents(texts)  # the export is of the adapted weights
    assert reps.slots.shape[1] == 4 and np.allclose(reps.slots, torch_reps.slots, atol=1e-4)
    assert reps.impact == torch_reps.impact
    assert (out / "trainable" / "model.safetensors").is_file() and not (out / ".adapt").exists()
    assert not (out / "trainable" / "checkpoints").exists()
    record = json.loads((out / "trainable" / "adapt.json").read_text())
    assert record["documents"] == 5 and record["steps"] == 3
    training = json.loads((out / "trainable" / "diffret_config.json").read_text())["extra"]["training"]
    assert training["steps"] == 3
    assert any("pseudo-queries" in line for line in lines)
    with pytest.raises(TrainingDataError, match="already holds an adapted model"):
        adapt(corpus, start, out, precision="fp32", max_steps=3, threads=1, progress=False, log=lines.append)
    again = adapt(corpus, out, tmp_path / "again", precision="fp32", max_steps=1, threads=1, progress=False,
                  log=lines.append)  # an adapted export carries trainable weights
    assert load_model(again).encode_queries(["wing"]).slots.shape[1] == 2


def test_interrupted_export_does_not_train_again(start, corpus, tmp_path, monkeypatch):
    import pyserini_diffret.onnx_export as onnx_export

    out = tmp_path / "adapted"
    real = onnx_export.export_model

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "export_model", broken)
    with pytest.raises(KeyboardInterrupt):
        adapt(corpus, start, out, precision="fp32", max_steps=2, threads=1, progress=False, log=lambda m: None)
    monkeypatch.setattr(onnx_export, "export_model", real)
    import pyserini_diffret.train.trainer as trainer

    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained again"))
    lines = []
    adapt(corpus, start, out, precision="fp32", max_steps=2, threads=1, progress=False, log=lines.append)
    assert any("training had finished" in line for line in lines)
    assert load_model(out).encode_queries(["wing"]).slots.shape[1] == 2


def test_an_export_without_torch_weights_starts_from_its_recovered_weights(start, corpus, tmp_path):
    from pyserini_diffret.onnx_export import export_model

    export = export_model(start, tmp_path / "export", precision="fp32")
    lines = []
    out = adapt(corpus, export, tmp_path / "out", precision="fp32", max_steps=1, progress=False, log=lines.append)
    assert any("recovered from its graph" in line for line in lines)
    assert load_model(out).encode_queries(["wing"]).slots.shape[1] == 2


def test_a_decoder_export_cannot_be_adapted_without_its_source(tiny_model_dirs, corpus, tmp_path):
    from pyserini_diffret.onnx_export import export_model

    export = export_model(tiny_model_dirs["dream"], tmp_path / "export", precision="fp32", backbone="dream")
    with pytest.raises(TrainingDataError, match="BERT masked LMs only"):
        adapt(corpus, export, tmp_path / "out", precision="fp32", max_steps=1, progress=False, log=lambda m: None)


def test_cli_errors_name_the_input(tmp_path, capsys):
    missing = tmp_path / "nothere.jsonl"
    assert train_main(["adapt", "--corpus", str(missing), "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "titles.jsonl"
    empty.write_text(json.dumps({"_id": "a", "title": "", "text": "short"}) + "\n")
    assert train_main(["adapt", "--corpus", str(empty), "--output", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "no document gives a training pair" in capsys.readouterr().err
