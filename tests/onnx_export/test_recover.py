"""Torch weights recovered from an exported masked-LM graph (``onnx_export.recover``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pyserini_diffret import load_model
from pyserini_diffret.core.record import ModelFolderError
from pyserini_diffret.onnx_export import export_model
from pyserini_diffret.onnx_export.recover import recover_weights

TEXTS = ["the quick brown fox", "protein folding in cells", "swept wing shock waves"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny masked LM whose biases and LayerNorm parameters are random, as a trained model's are (the export
    merges identical constants, so a freshly initialised model would have most of them nameless)."""
    from transformers import BertForMaskedLM

    from tests.tiny_models import make_mlm

    folder = make_mlm(tmp_path_factory.mktemp("mlm") / "mlm")
    model = BertForMaskedLM.from_pretrained(str(folder))
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 1:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(str(folder))
    return folder


def test_fp32_export_gives_back_the_source_weights(source, tmp_path):
    export = export_model(source, tmp_path / "export", precision="fp32", backbone="mlm")
    recovered = recover_weights(export, tmp_path / "recovered")
    original, back = load_file(str(source / "model.safetensors")), load_file(str(recovered / "model.safetensors"))
    compared = [n for n in original if n in back]
    assert len(compared) >= len(back) - 1  # every recovered tensor has its source (decoder weight: tied)
    for name in compared:
        assert torch.allclose(original[name].float(), back[name], atol=1e-6), name
    config = json.loads((recovered / "config.json").read_text())
    source_config = json.loads((source / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert config[key] == source_config[key], key
    a, b = load_model(export).encode_documents(TEXTS), load_model(recovered).encode_documents(TEXTS)
    assert np.allclose(a.slots, b.slots, atol=1e-4) and a.impact == b.impact


def test_int8_export_recovers_close_weights(source, tmp_path):
    export = export_model(source, tmp_path / "export", precision="int8", backbone="mlm")
    recovered = recover_weights(export, tmp_path / "recovered")
    original, back = load_file(str(source / "model.safetensors")), load_file(str(recovered / "model.safetensors"))
    for name, tensor in back.items():
        if name in original and tensor.ndim == 2:
            scale = original[name].abs().max()
            assert (tensor - original[name]).abs().max() <= 0.02 * scale, name


def test_a_wrong_mapping_is_refused(source, tmp_path, monkeypatch):
    import pyserini_diffret.onnx_export.recover as recover

    export = export_model(source, tmp_path / "export", precision="fp32", backbone="mlm")
    real = recover._save

    def swapped(weights, *args):  # embedding rows off by one token: what a wrong mapping would give
        name = "bert.embeddings.word_embeddings.weight"
        weights[name] = np.roll(weights[name], 1, axis=0)
        return real(weights, *args)

    monkeypatch.setattr(recover, "_save", swapped)
    with pytest.raises(ModelFolderError, match="disagree with the graph"):
        recover_weights(export, tmp_path / "recovered")


def test_an_export_this_version_no_longer_runs_is_still_recovered(source, tmp_path):
    """Recovery is the way to bring an old export up to date (the load error for formats 1-3 says so): the
    record is read leniently and the check runs the graph itself, never ``load_model`` on the export."""
    from pyserini_diffret.core.config import CONFIG_NAME

    export = export_model(source, tmp_path / "export", precision="fp32", backbone="mlm")
    path = export / CONFIG_NAME
    data = json.loads(path.read_text())
    data["extra"]["onnx"]["format"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="export record format 3"):
        load_model(export)
    recovered = recover_weights(export, tmp_path / "recovered")
    original, back = load_file(str(source / "model.safetensors")), load_file(str(recovered / "model.safetensors"))
    assert all(torch.allclose(original[n].float(), back[n], atol=1e-6) for n in original if n in back)
