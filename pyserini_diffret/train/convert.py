"""Give a BERT sentence encoder (no MLM head, e.g. all-MiniLM-L6-v2) the masked-LM head the adapters read.

The head is the standard BERT one: a fresh ``dense -> GELU -> LayerNorm`` transform, then the word
embedding matrix (tied) and a bias. Its weights are random (seeded) and fine-tuning trains them; the
encoder weights are copied unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch


def add_mlm_head(source: str | Path, output: str | Path, *, seed: int = 0, bias: float = 0.0) -> Path:
    """Write ``output``: a ``BertForMaskedLM`` folder whose encoder is ``source``'s ``BertModel``."""
    from transformers import BertConfig, BertForMaskedLM, BertModel  # noqa: PLC0415

    from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415

    source, output = Path(source), Path(output)
    config = BertConfig.from_pretrained(str(source))
    if config.model_type != "bert":
        raise ValueError(f"{source}: expected a BERT encoder (model_type 'bert'), got {config.model_type!r}")
    config.architectures = ["BertForMaskedLM"]
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    encoder = BertModel.from_pretrained(str(source), add_pooling_layer=False)
    missing, unexpected = model.bert.load_state_dict(encoder.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: encoder weights do not fit BertForMaskedLM (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    with torch.no_grad():
        model.cls.predictions.bias.fill_(bias)
    output.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(str(output))
    load_tokenizer(source).save_pretrained(str(output))
    return output
