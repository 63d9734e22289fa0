"""Fine-tuning on the tiny random models: learning, determinism, resume, LoRA, outputs, bad data."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pyserini_diffret import load_model
from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.train import TrainConfig, TrainingDataError, train
from pyserini_diffret.train.__main__ import main as train_main


def _config(model, output, data, **overrides) -> TrainConfig:
    settings = dict(model=str(model), output=str(output), data=str(data), backbone="mlm", batch_size=4,
                    hard_negatives=1, k_query=2, k_doc=4, max_document_length=24, max_query_length=12,
                    learning_rate=3e-3, warmup_ratio=0.0, progress=False, threads=1)
    settings.update(overrides)
    return TrainConfig(**settings)


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_decreases_on_a_toy_set(tiny_model_dirs, toy_jsonl, tmp_path):
    result = train(_config(tiny_model_dirs["mlm"], tmp_path / "out", toy_jsonl, max_steps=24))
    losses = [r["loss"] for r in result.losses]
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, losses
    assert all("dense" in r and "sparse" in r for r in result.losses)


def test_output_is_a_fine_tuned_encoder_folder(tiny_model_dirs, toy_jsonl, tmp_path):
    out = tmp_path / "out"
    train(_config(tiny_model_dirs["mlm"], out, toy_jsonl, max_steps=2, k_query=3, k_doc=5))
    config = RetrieverConfig.load(out)
    assert config.fine_tuned and not config.stop_truncation
    assert (config.k_query, config.k_doc, config.terms_per_slot) == (3, 5, 256)
    assert (config.max_query_length, config.max_document_length) == (12, 24)
    assert config.extra["training"]["steps"] == 2
    model = load_model(out)  # no backbone flag needed
    reps = model.encode_queries(["fox dog"])
    assert reps.slots.shape[1] == 3
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2


def test_fixed_seed_gives_the_same_model(tiny_model_dirs, toy_jsonl, tmp_path):
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        train(_config(tiny_model_dirs["mlm"], tmp_path / name, toy_jsonl, max_steps=4, seed=seed))
        runs[name] = _weights(tmp_path / name)
    assert _same(runs["a"], runs["b"])
    assert not _same(runs["a"], runs["c"])


class _Stop(Exception):
    pass


def test_resume_gives_the_same_result_as_uninterrupted(tiny_model_dirs, toy_jsonl, tmp_path):
    whole = tmp_path / "whole"
    train(_config(tiny_model_dirs["mlm"], whole, toy_jsonl, max_steps=6, save_steps=2))

    def interrupt(step, _):
        if step == 3:
            raise _Stop

    parted = tmp_path / "parted"
    with pytest.raises(_Stop):
        train(_config(tiny_model_dirs["mlm"], parted, toy_jsonl, max_steps=6, save_steps=2), callback=interrupt)
    assert not (parted / "model.safetensors").exists()
    assert (parted / "checkpoints" / "step-000002").is_dir()
    result = train(_config(tiny_model_dirs["mlm"], parted, toy_jsonl, max_steps=6, save_steps=2, resume=True))
    assert [r["step"] for r in result.losses] == [1, 2, 3, 4, 5, 6]
    assert _same(_weights(whole), _weights(parted))
    whole_log = [json.loads(line)["loss"] for line in (whole / "train_log.jsonl").read_text().splitlines()]
    assert whole_log == [r["loss"] for r in result.losses]


def test_resume_refuses_changed_settings(tiny_model_dirs, toy_jsonl, tmp_path):
    out = tmp_path / "out"
    train(_config(tiny_model_dirs["mlm"], out, toy_jsonl, max_steps=4, save_steps=2))
    with pytest.raises(ValueError, match="seed"):
        train(_config(tiny_model_dirs["mlm"], out, toy_jsonl, max_steps=4, save_steps=2, seed=99, resume=True))


def test_lora_on_a_diffusion_backbone_saves_merged_weights(tiny_model_dirs, toy_jsonl, tmp_path):
    out = tmp_path / "dream"
    result = train(_config(tiny_model_dirs["dream"], out, toy_jsonl, backbone="dream", lora="on", max_steps=3,
                           gradient_checkpointing=True, precision="bf16"))
    assert result.losses[-1]["step"] == 3
    weights = _weights(out)
    assert not any("lora" in key for key in weights)
    base = _weights(tiny_model_dirs["dream"])
    assert weights.keys() == base.keys()
    assert any(not torch.equal(weights[k], base[k].to(weights[k].dtype)) for k in weights)
    assert load_model(out).config.backbone == "dream"


def test_llada_full_fine_tuning_runs(tiny_model_dirs, toy_jsonl, tmp_path):
    result = train(_config(tiny_model_dirs["llada"], tmp_path / "llada", toy_jsonl, backbone="llada", lora="off",
                           max_steps=2))
    assert len(result.losses) == 2


def test_warm_start_distillation_lowers_its_loss(tiny_model_dirs, toy_jsonl, tmp_path):
    mlm = tiny_model_dirs["mlm"]
    result = train(_config(mlm, tmp_path / "out", toy_jsonl, max_steps=16, dense_teacher=str(mlm),
                           sparse_teacher=str(mlm), distill_steps=12, distill_weight=0.5))
    early, late = result.losses[:12], result.losses[12:]
    assert all("dense" not in r for r in early) and all("dense" in r for r in late)
    assert early[-1]["distill_dense"] < early[0]["distill_dense"]
    assert all("distill_dense" in r and "distill_sparse" in r for r in late)


# -- bad data -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ("", "no training examples"),
    ('{"query": "a", "positives": ["p"]}\n{"query": "b", "positives": ["p"]\n', ":2: not valid JSON"),
    ('{"query": "a", "positives": []}\n', ":1: 'positives' must be a non-empty list"),
    ('{"query": "", "positives": ["p"]}\n', ":1: 'query' must be a non-empty string"),
    ('{"query": 3, "positives": ["p"]}\n', ":1: 'query' must be a non-empty string"),
    ('["query", "p"]\n', ":1: expected a JSON object"),
    ('{"query": "a", "positives": [5]}\n', ":1: positives[0]: a passage must be a string"),
    ('{"query": "a", "positives": ["p"], "negatives": "n"}\n', ":1: 'negatives' must be a list"),
    ('{"query": "a", "positives": ["  "]}\n', ":1: positives[0]: empty passage text"),
])
def test_bad_training_files_name_file_and_line(tiny_model_dirs, tmp_path, content, message):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    with pytest.raises(TrainingDataError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        train(_config(tiny_model_dirs["mlm"], tmp_path / "out", data, max_steps=1))
    assert str(data) in str(error.value)


def test_no_negatives_and_no_corpus_is_a_clear_error(tiny_model_dirs, tmp_path):
    data = tmp_path / "nonegs.jsonl"
    data.write_text('{"query": "a", "positives": ["p"]}\n{"query": "b", "positives": ["q"]}\n')
    with pytest.raises(TrainingDataError, match="hard-negatives 0"):
        train(_config(tiny_model_dirs["mlm"], tmp_path / "out", data, max_steps=1))
    result = train(_config(tiny_model_dirs["mlm"], tmp_path / "out", data, max_steps=1, hard_negatives=0))
    assert len(result.losses) == 1


def test_beir_folder_errors(tiny_model_dirs, toy_beir, tmp_path):
    (toy_beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tmissing-doc\t1\n")
    with pytest.raises(TrainingDataError, match="not in the corpus"):
        train(_config(tiny_model_dirs["mlm"], tmp_path / "out", toy_beir, max_steps=1))
    (toy_beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\tx\n")
    with pytest.raises(TrainingDataError, match=r"train.tsv:2: relevance 'x' is not a number"):
        train(_config(tiny_model_dirs["mlm"], tmp_path / "out", toy_beir, max_steps=1))
    with pytest.raises(TrainingDataError, match="nothere.tsv: no such qrels file"):
        train(_config(tiny_model_dirs["mlm"], tmp_path / "out", toy_beir, qrels="qrels/nothere.tsv", max_steps=1))


def test_cli_reports_bad_data_without_a_traceback(tiny_model_dirs, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text("{not json}\n")
    code = train_main(["--model", str(tiny_model_dirs["mlm"]), "--data", str(data), "--output", str(tmp_path / "o"),
                       "--no-progress"])
    assert code == 2
    assert f"{data}:1: not valid JSON" in capsys.readouterr().err


def test_bm25_sparse_teacher_needs_no_weights(tiny_model_dirs, toy_jsonl, tmp_path):
    result = train(_config(tiny_model_dirs["mlm"], tmp_path / "out", toy_jsonl, max_steps=10, sparse_teacher="bm25",
                           distill_steps=8))
    early = [r["distill_sparse"] for r in result.losses[:8]]
    assert early[-1] < early[0]


def test_bm25_teacher_targets_are_bm25_over_word_pieces(tiny_model_dirs):
    from transformers import AutoTokenizer

    from pyserini_diffret.core.content import ContentFilter
    from pyserini_diffret.train.teachers import Bm25Teacher

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dirs["mlm"]))
    content = ContentFilter(tokenizer, len(tokenizer))
    corpus = ["fox fox dog", "dog cell", "cell wing"]
    teacher = Bm25Teacher(corpus, tokenizer, content, len(tokenizer), max_document_length=32, k1=0.9, b=0.0)
    fox = tokenizer.convert_tokens_to_ids("fox")
    query = teacher.batch(["fox"], 8, torch.device("cpu"), side="query")
    doc = teacher.batch(["fox fox dog"], 32, torch.device("cpu"))
    idf = torch.log(torch.tensor(1 + (3 - 1 + 0.5) / (1 + 0.5)))
    assert query[0, fox].item() == pytest.approx(0.25 * idf.item(), rel=1e-5)
    assert doc[0, fox].item() == pytest.approx(2 * 1.9 / (2 + 0.9), rel=1e-5)
    assert int((query[0] > 0).sum()) == 1
