"""``pyserini_diffret.backbones``: ``detect_backbone`` and ``backbone_class``."""
from __future__ import annotations

import json
import re

import pytest

from pyserini_diffret.backbones import BACKBONES, backbone_class, detect_backbone
from pyserini_diffret.backbones.ar import AutoregressiveBackbone
from pyserini_diffret.backbones.decoder import DreamBackbone, LLaDABackbone
from pyserini_diffret.backbones.mlm import MaskedLMBackbone

CLASSES = {"mlm": MaskedLMBackbone, "dream": DreamBackbone, "llada": LLaDABackbone, "ar": AutoregressiveBackbone}


def _config_folder(folder, source, **changes):
    """A folder whose config.json is ``source``'s with ``changes`` (what a real checkpoint's config says)."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config.update(changes)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_detects_the_tiny_masked_lm_by_its_architecture(tiny_model_dirs):
    config = json.loads((tiny_model_dirs["mlm"] / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForMaskedLM"]
    assert detect_backbone(tiny_model_dirs["mlm"]) == "mlm"
    assert backbone_class(detect_backbone(tiny_model_dirs["mlm"])) is MaskedLMBackbone


@pytest.mark.parametrize("architecture", ["RobertaForMaskedLM", "ModernBertForMaskedLM", "DistilBertForMaskedLM"])
def test_any_for_masked_lm_architecture_is_mlm(tmp_path, tiny_model_dirs, architecture):
    folder = _config_folder(tmp_path / "m", tiny_model_dirs["mlm"], model_type="whatever", architectures=[architecture])
    assert detect_backbone(folder) == "mlm"


@pytest.mark.parametrize(
    ("family", "model_type", "architectures", "expected"),
    [
        ("dream", "Dream", ["DreamModel"], "dream"),  # Dream-v0-Instruct-7B's spelling
        ("dream", "dream", ["DreamModel"], "dream"),
        ("llada", "llada", ["LLaDAModelLM"], "llada"),  # LLaDA-8B-Instruct's spelling
        ("llada", "LLaDA", ["LLaDAModelLM"], "llada"),
        # model_type wins over a masked-LM-looking architecture list
        ("dream", "Dream", ["DreamForMaskedLM"], "dream"),
    ],
)
def test_detects_diffusion_decoders_by_model_type(tmp_path, tiny_model_dirs, family, model_type, architectures,
                                                  expected):
    folder = _config_folder(tmp_path / family, tiny_model_dirs[family], model_type=model_type,
                            architectures=architectures)
    assert detect_backbone(folder) == expected


@pytest.mark.parametrize(("family", "model_type"), [("dream", "qwen2"), ("llada", "llama"), ("ar", "qwen2")])
def test_stock_decoder_folders_are_not_guessed(tiny_model_dirs, family, model_type):
    """The tiny decoders are stock Qwen2/Llama folders: nothing says diffusion, so the caller must pass
    ``backbone=``; the error names what config.json says and the choices."""
    with pytest.raises(ValueError) as error:
        detect_backbone(tiny_model_dirs[family])
    message = str(error.value)
    assert f"model_type={model_type!r}" in message
    assert "architectures=" in message and "ForCausalLM" in message
    assert "pass backbone=" in message and "mlm, dream, llada, ar" in message
    assert str(tiny_model_dirs[family]) in message


def test_folder_without_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        detect_backbone(tmp_path)


def test_backbone_class_by_name():
    assert list(BACKBONES) == ["mlm", "dream", "llada", "ar"]
    for name, cls in CLASSES.items():
        assert backbone_class(name) is cls
        assert cls.name == name


def test_backbone_class_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=re.escape("unknown backbone 'nope'; choose one of: mlm, dream, llada, ar")):
        backbone_class("nope")
