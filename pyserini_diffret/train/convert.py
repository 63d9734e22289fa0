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


# -- trainable weights shipped beside an export ---------------------------------------------------------------
# An export holds graph weights only; training needs the model's own tensors. ``pack_trainable`` stores them
# beside the export at a quarter of their float32 size: every matrix as int8 rows with one float32 scale per
# row (symmetric; the same grain as the export's int8 weights), vectors in float32. Written here rather than
# with a quantisation library because the format must load without one, as plain safetensors.
PACKED_WEIGHTS = "weights.int8.safetensors"
PACKED_FORMAT = "diffret-int8-rows/1"
_SCALE_SUFFIX = ".row_scale"


def pack_trainable(source: str | Path, target: str | Path) -> Path:
    """Write ``target``: ``source``'s weights packed (``PACKED_WEIGHTS``), its ``config.json`` and settings."""
    import shutil  # noqa: PLC0415

    from safetensors.torch import load_file, save_file  # noqa: PLC0415

    source, target = Path(source), Path(target)
    files = sorted(source.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{source}: no model*.safetensors to pack")
    packed: dict[str, torch.Tensor] = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            tensor = tensor.float()
            if tensor.ndim == 2:
                scale = tensor.abs().amax(dim=1).clamp(min=1e-12) / 127.0
                packed[name] = torch.round(tensor / scale[:, None]).clamp(-127, 127).to(torch.int8)
                packed[name + _SCALE_SUFFIX] = scale
            else:
                packed[name] = tensor.contiguous()
    target.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(target / PACKED_WEIGHTS), metadata={"format": PACKED_FORMAT})
    for name in ("config.json", "diffret_config.json"):
        shutil.copyfile(source / name, target / name)
    return target


def restore_trainable(folder: str | Path, output: str | Path, *, tokenizer_folder: str | Path) -> Path:
    """An encoder folder (float32 weights, config, tokenizer) from a trainable folder; a Hugging Face folder
    is returned as it is, packed weights are unpacked into ``output`` (reused when already there)."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import load_file, save_file  # noqa: PLC0415

    from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415
    from pyserini_diffret.core.config import RetrieverConfig  # noqa: PLC0415

    folder, output = Path(folder), Path(output)
    if any(folder.glob("model*.safetensors")):
        return folder
    packed = folder / PACKED_WEIGHTS
    if not packed.is_file():
        raise FileNotFoundError(f"{folder}: neither model weights nor {PACKED_WEIGHTS}")
    with safe_open(str(packed), framework="pt") as handle:
        found = (handle.metadata() or {}).get("format")
    if found != PACKED_FORMAT:
        raise ValueError(f"{packed}: format {found!r}, expected {PACKED_FORMAT!r}")
    if (output / "model.safetensors").is_file() and (output / "diffret_config.json").is_file():
        return output
    tensors = load_file(str(packed))
    weights = {}
    for name, tensor in tensors.items():
        if name.endswith(_SCALE_SUFFIX):
            continue
        scale = tensors.get(name + _SCALE_SUFFIX)
        weights[name] = tensor.float() * scale[:, None] if scale is not None else tensor
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(folder / "config.json", staging / "config.json")
    settings = RetrieverConfig.load(folder)
    settings.runtime = "torch"
    settings.extra = {k: v for k, v in settings.extra.items() if k != "onnx"}
    settings.save(staging)
    load_tokenizer(Path(tokenizer_folder)).save_pretrained(str(staging))
    json.loads((staging / "config.json").read_text())  # a readable config, or fail before the folder is used
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
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
