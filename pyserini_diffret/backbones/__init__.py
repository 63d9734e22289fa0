"""Backbone adapters by name; ``detect_backbone`` picks one from a Hugging Face config."""
from __future__ import annotations

from pathlib import Path

from pyserini_diffret.backbones.ar import AutoregressiveBackbone
from pyserini_diffret.backbones.base import Backbone, read_hf_config
from pyserini_diffret.backbones.decoder import DreamBackbone, LLaDABackbone
from pyserini_diffret.backbones.mlm import MaskedLMBackbone

BACKBONES: dict[str, type[Backbone]] = {
    cls.name: cls for cls in (MaskedLMBackbone, DreamBackbone, LLaDABackbone, AutoregressiveBackbone)
}


def backbone_class(name: str) -> type[Backbone]:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def detect_backbone(path: Path) -> str:
    """Backbone name for a Hugging Face folder, from its config.json."""
    config = read_hf_config(path)
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    if model_type == "dream":
        return "dream"
    if model_type.startswith("llada"):
        return "llada"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "mlm"
    raise ValueError(
        f"{path}: cannot tell the backbone from config.json (model_type={model_type!r}, "
        f"architectures={architectures}); recognised: model_type 'dream' (Dream) or 'llada*' (LLaDA), or an "
        f"architecture ending in ForMaskedLM (mlm); pass backbone= one of {', '.join(BACKBONES)}"
    )


__all__ = ["BACKBONES", "Backbone", "backbone_class", "detect_backbone"]
