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


# -- weight interpolation ---------------------------------------------------------------------------------------
def interpolate(anchor: str | Path, fine_tuned: str | Path, alpha: float, output: str | Path) -> Path:
    """Write ``output``: ``fine_tuned`` with every weight at ``anchor + alpha * (fine_tuned - anchor)``.

    ``anchor``: a training checkpoint (``trainer_state.pt`` of a full fine-tuning run) or an encoder folder of the
    same architecture. Interpolating toward an earlier, more general state of the same run (WiSE-FT, Wortsman et
    al., 2022) trades in-domain fit for robustness; ``alpha`` 1 is ``fine_tuned``, 0 the anchor.
    """
    import shutil  # noqa: PLC0415

    from safetensors.torch import load_file, save_file  # noqa: PLC0415

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    anchor, fine_tuned, output = Path(anchor), Path(fine_tuned), Path(output)
    files = sorted(fine_tuned.glob("model*.safetensors"))
    if len(files) != 1:
        raise FileNotFoundError(f"{fine_tuned}: expected one model.safetensors, found {len(files)}")
    weights = load_file(str(files[0]))
    if anchor.is_dir() and (anchor / "trainer_state.pt").is_file():
        anchor = anchor / "trainer_state.pt"
    if anchor.suffix == ".pt":
        state = torch.load(anchor, map_location="cpu", weights_only=False)["parameters"]
        state = {name.removeprefix("model."): value for name, value in state.items()}
    else:
        state = load_file(str(next(iter(sorted(anchor.glob("model*.safetensors"))))))
    missing = sorted(set(weights) - set(state))
    if missing:
        raise ValueError(f"{anchor}: no value for {len(missing)} weights of {fine_tuned}, e.g. {missing[:3]}")
    mixed = {name: torch.lerp(state[name].float(), value.float(), alpha).to(value.dtype).contiguous()
             for name, value in weights.items()}  # lerp: exact at both ends
    output.mkdir(parents=True, exist_ok=True)
    for item in fine_tuned.iterdir():
        if item.is_file() and item.suffix in (".json", ".txt", ".model") and item.name != "trainer_state.pt":
            shutil.copyfile(item, output / item.name)
    save_file(mixed, str(output / files[0].name), metadata={"format": "pt"})
    return output
