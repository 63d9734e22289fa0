"""Weight interpolation between a training checkpoint (or another folder) and the finished model."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pyserini_diffret import load_model
from pyserini_diffret.train import TrainConfig, train
from pyserini_diffret.train.convert import interpolate


@pytest.fixture
def run(tiny_model_dirs, toy_jsonl, tmp_path):
    out = tmp_path / "ft"
    train(TrainConfig(model=str(tiny_model_dirs["mlm"]), output=str(out), data=str(toy_jsonl), backbone="mlm",
                      batch_size=4, hard_negatives=1, k_query=2, k_doc=4, max_document_length=24, max_query_length=12,
                      learning_rate=3e-3, max_steps=3, save_steps=1, keep_checkpoints=5, progress=False, threads=1))
    return out


def test_interpolation_ends_and_midpoint(run, tmp_path):
    anchor = run / "checkpoints" / "step-000001"
    state = torch.load(anchor / "trainer_state.pt", map_location="cpu", weights_only=False)["parameters"]
    final = load_file(str(run / "model.safetensors"))
    ends = {a: load_file(str(interpolate(anchor, run, a, tmp_path / f"a{a}") / "model.safetensors")) for a in (0, 0.5, 1)}
    changed = [n for n in final if not torch.equal(final[n], state[n])]
    assert changed  # training moved the weights, so the test can tell the ends apart
    for name in final:
        assert torch.equal(ends[1][name], final[name])
        assert torch.allclose(ends[0][name], state[name])
        assert torch.allclose(ends[0.5][name], (state[name] + final[name]) / 2, atol=1e-6)
    assert load_model(tmp_path / "a0.5").encode_queries(["fox"]).slots.shape[1] == 2  # a loadable encoder folder


def test_interpolation_checks_its_inputs(run, tiny_model_dirs, tmp_path):
    with pytest.raises(ValueError, match="alpha must be in"):
        interpolate(run / "checkpoints" / "step-000001", run, 1.5, tmp_path / "x")
    with pytest.raises(ValueError, match="no value for"):
        interpolate(tiny_model_dirs["dream"], run, 0.5, tmp_path / "y")
