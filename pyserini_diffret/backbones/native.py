"""Native loading of the real Dream and LLaDA checkpoints, without their remote code.

Both checkpoints ship their own modelling code (``auto_map`` in config.json), and neither runs under
transformers 5.x. Their architectures are, however, exactly the library's own Qwen2 and Llama decoders
run with full bidirectional attention. This module maps a folder's config onto ``Qwen2Config`` /
``LlamaConfig`` and its weights onto ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` parameter names.

Facts, read from the public modelling files (``modeling_dream.py``/``configuration_dream.py``, and
``modeling_llada.py``/``configuration_llada.py`` as copied in public repositories):

Dream (``model_type`` "Dream"): a Qwen2 decoder. ``DreamAttention`` has biased q/k/v and an unbiased
o_proj; ``DreamMLP`` is ``down(act(gate(x)) * up(x))`` without bias, ``act = ACT2FN[hidden_act]``;
``DreamRMSNorm`` is Llama's RMSNorm; rotary embeddings use the default rope of ``rope_theta`` over
``head_dim = hidden_size // num_attention_heads``; ``DreamBaseModel`` applies the final ``norm``;
``DreamModel.lm_head`` is untied unless ``tie_word_embeddings``; attention is hard-coded non-causal.
The weight names are Qwen2's (``model.layers.N.self_attn.q_proj``, ``model.norm``, ``lm_head``).

LLaDA (``model_type`` "llada", ``block_type`` "llama"): ``LLaDALlamaBlock`` computes
``x + attn_out(attention(q_proj, k_proj, v_proj of attn_norm(x)))`` then
``x + ff_out(act(ff_proj(h)) * up_proj(h))`` with ``h = ff_norm(x)``: with ``activation_type`` "silu",
``ff_proj`` is Llama's gate_proj, ``up_proj`` its up_proj and the block's ``ff_out`` its down_proj.
Norms are RMS norms (``layer_norm_type`` "rms", ``rms_norm_eps``) with a weight and no bias
(``bias_for_layer_norm``/``include_bias`` false); rotary embeddings of ``rope_theta`` over
``d_model // n_heads`` with the usual half rotation; ``n_kv_heads`` key/value heads repeated per group;
the model's own ``transformer.ln_f`` then ``transformer.ff_out`` (the LM head, absent when
``weight_tying``: the embedding ``wte`` is used instead) over ``embedding_size or vocab_size`` rows.
Only the padding mask is applied (no causal mask). Variants this mapping cannot express (ALiBi, QK
norms, scaled logits or embeddings, biases, LayerNorm, other block types or activations, block groups)
are refused with the offending keys named.

Weights are read tensor by tensor from ``model.safetensors`` or ``model.safetensors.index.json`` and
its shards straight into the parameters of a model built on the ``meta`` device, so loading needs about
the model's size in memory, not twice that (see ``benchmarks/native_loading.py``).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

# model_type values (lower-cased) with a native loader, and how they are spelled in real folders.
NATIVE_MODEL_TYPES: dict[str, str] = {"dream": "Dream", "llada": "llada"}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100 * 1024 * 1024  # a safetensors header larger than this is not a real checkpoint


class NativeLoadError(ValueError):
    """A folder that the native loader cannot map (names the folder and what is wrong)."""


def supported_model_types() -> str:
    return ", ".join(repr(spelling) for spelling in NATIVE_MODEL_TYPES.values())


def native_model_type(hf_config: dict[str, Any]) -> str | None:
    """The native loader's key for a config.json, or None when there is no native loader for it."""
    model_type = str(hf_config.get("model_type", "")).lower()
    return model_type if model_type in NATIVE_MODEL_TYPES else None


# -- config mapping ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NativeArchitecture:
    """What a native folder becomes: a library config, the model class, and the weight-name mapping."""

    config: Any  # transformers.PretrainedConfig
    model_class: type
    rename: Callable[[str], str | None]  # checkpoint name -> parameter name (None: not a parameter, skip)
    source: str  # the model_type as the folder spells it


def _rope(theta: float) -> dict[str, Any]:
    return {"rope_type": "default", "rope_theta": float(theta)}


def _dream(path: Path, cfg: dict[str, Any]) -> NativeArchitecture:
    from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: PLC0415

    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [key for key in required if cfg.get(key) is None]
    if missing:
        raise NativeLoadError(f"{path}: config.json of this Dream model lacks {', '.join(missing)}")
    scaling = cfg.get("rope_scaling")
    if scaling and str(scaling.get("rope_type", scaling.get("type", "default"))) != "default":
        raise NativeLoadError(f"{path}: Dream with rope_scaling={scaling!r} is not supported by the native loader; "
                              "load it with trust_remote_code=True")
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    if hidden % heads:
        raise NativeLoadError(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    config = Qwen2Config(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=int(cfg["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
        hidden_act=str(cfg.get("hidden_act", "silu")),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 32768)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_parameters=_rope(cfg.get("rope_theta", 10000.0)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        # Dream's SDPA attention never applies a sliding window, whatever its config says.
        use_sliding_window=False,
        attention_dropout=float(cfg.get("attention_dropout", 0.0)),
        pad_token_id=cfg.get("pad_token_id"),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"),
        use_cache=False,
    )
    return NativeArchitecture(config, Qwen2ForCausalLM, _dream_name, str(cfg.get("model_type")))


def _dream_name(name: str) -> str | None:
    return None if name.endswith("rotary_emb.inv_freq") else name  # Qwen2's own names


# LLaDA's ModelConfig defaults (configuration_llada.py), for keys a config.json may leave out.
_LLADA_DEFAULTS: dict[str, Any] = {
    "mlp_ratio": 4, "mlp_hidden_size": None, "activation_type": "swiglu", "block_type": "sequential",
    "block_group_size": 1, "alibi": False, "rope": False, "attention_layer_norm": False,
    "input_emb_norm": False, "layer_norm_type": "default", "layer_norm_with_affine": True,
    "rms_norm_eps": 1e-5, "max_sequence_length": 1024, "rope_theta": 10000.0, "include_qkv_bias": False,
    "include_bias": False, "bias_for_layer_norm": None, "scale_logits": False, "embedding_size": 50304,
    "weight_tying": True, "n_kv_heads": None, "multi_query_attention": None,
}


def _llada(path: Path, raw: dict[str, Any]) -> NativeArchitecture:
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    cfg = {**_LLADA_DEFAULTS, **raw}
    missing = [key for key in ("d_model", "n_heads", "n_layers", "vocab_size") if raw.get(key) is None]
    if missing:
        raise NativeLoadError(f"{path}: config.json of this LLaDA model lacks {', '.join(missing)}")
    expected = {
        "block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "rope": True, "alibi": False,
        "attention_layer_norm": False, "input_emb_norm": False, "scale_logits": False, "include_bias": False,
        "include_qkv_bias": False, "layer_norm_with_affine": True, "block_group_size": 1,
    }
    unsupported = [f"{key}={cfg.get(key)!r} (supported: {value!r})" for key, value in expected.items()
                   if cfg.get(key) != value]
    if cfg.get("bias_for_layer_norm"):
        unsupported.append("bias_for_layer_norm=True (supported: false)")
    if unsupported:
        raise NativeLoadError(f"{path}: this LLaDA variant is not supported by the native loader: "
                              f"{'; '.join(unsupported)}; load it with trust_remote_code=True")
    d_model, heads = int(cfg["d_model"]), int(cfg["n_heads"])
    if d_model % heads:
        raise NativeLoadError(f"{path}: d_model {d_model} is not a multiple of n_heads {heads}")
    kv_heads = _llada_kv_heads(path, cfg["n_kv_heads"], cfg["multi_query_attention"], heads)
    embedding_rows = int(cfg["embedding_size"] or cfg["vocab_size"])
    if embedding_rows < int(cfg["vocab_size"]):
        raise NativeLoadError(f"{path}: embedding_size {embedding_rows} is smaller than vocab_size {cfg['vocab_size']}")
    hidden_ff = cfg["mlp_hidden_size"] if cfg["mlp_hidden_size"] is not None else cfg["mlp_ratio"] * d_model
    tied = bool(cfg["weight_tying"])
    config = LlamaConfig(
        vocab_size=embedding_rows,  # the embedding and the head have embedding_size rows
        hidden_size=d_model,
        intermediate_size=int(hidden_ff),
        num_hidden_layers=int(cfg["n_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=d_model // heads,
        hidden_act="silu",
        max_position_embeddings=int(cfg["max_sequence_length"]),
        rms_norm_eps=float(cfg["rms_norm_eps"]),
        rope_parameters=_rope(cfg["rope_theta"]),
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=tied,
        attention_dropout=0.0,
        # LLaDA's wte has no padding_idx (its pad id is EOS, a real tail token): keep every row trainable.
        pad_token_id=None,
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=raw.get("eos_token_id"),
        use_cache=False,
    )
    return NativeArchitecture(config, LlamaForCausalLM, _llada_name, str(raw.get("model_type")))


def _llada_kv_heads(path: Path, n_kv_heads: Any, multi_query: Any, heads: int) -> int:
    """``ModelConfig.effective_n_kv_heads`` of configuration_llada.py."""
    if n_kv_heads is None:
        return 1 if multi_query is True else heads
    if multi_query is None:
        return int(n_kv_heads)
    should_be = 1 if multi_query else heads
    if int(n_kv_heads) != should_be:
        raise NativeLoadError(f"{path}: n_kv_heads={n_kv_heads} contradicts multi_query_attention={multi_query}")
    return should_be


_LLADA_BLOCK = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_proj": "mlp.gate_proj",  # act(ff_proj(x)) * up_proj(x): the gated branch
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",  # a block's ff_out; the model's own transformer.ff_out is the LM head
    "attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm",
}
_LLADA_TOP = {"wte": "model.embed_tokens", "ln_f": "model.norm", "ff_out": "lm_head"}
_LLADA_BLOCK_RE = re.compile(r"model\.transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)")
_LLADA_TOP_RE = re.compile(r"model\.transformer\.(\w+)\.(weight|bias)")


def _llada_name(name: str) -> str:
    if match := _LLADA_BLOCK_RE.fullmatch(name):
        layer, part, kind = match.groups()
        if part in _LLADA_BLOCK:
            return f"model.layers.{layer}.{_LLADA_BLOCK[part]}.{kind}"
    elif match := _LLADA_TOP_RE.fullmatch(name):
        part, kind = match.groups()
        if part in _LLADA_TOP:
            return f"{_LLADA_TOP[part]}.{kind}"
    return f"<unmapped {name}>"


_BUILDERS: dict[str, Callable[[Path, dict[str, Any]], NativeArchitecture]] = {"dream": _dream, "llada": _llada}


def native_architecture(path: Path, hf_config: dict[str, Any] | None = None) -> NativeArchitecture:
    """The library config, model class and weight-name mapping for a Dream or LLaDA folder."""
    from pyserini_diffret.backbones.base import read_hf_config  # noqa: PLC0415

    hf_config = read_hf_config(path) if hf_config is None else hf_config
    key = native_model_type(hf_config)
    if key is None:
        raise NativeLoadError(
            f"{path}: model_type {hf_config.get('model_type')!r} has no native loader "
            f"(supported: {supported_model_types()})"
        )
    return _BUILDERS[key](path, hf_config)


# -- safetensors, read in place -------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


def _read_header(file: Path) -> dict[str, _Entry]:
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise NativeLoadError(f"{file}: not a safetensors file (shorter than its header size)")
        length = int.from_bytes(head, "little")
        if length > min(_MAX_HEADER, size - 8):
            raise NativeLoadError(f"{file}: not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise NativeLoadError(f"{file}: unreadable safetensors header ({error})") from None
    base = 8 + length
    entries: dict[str, _Entry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise NativeLoadError(f"{file}: tensor {name} has dtype {info.get('dtype')!r}, which the native loader "
                                  f"does not read (supported: {', '.join(_DTYPES)})")
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        numel = 1
        for dim in shape:
            numel *= dim
        if end - begin != numel * dtype.itemsize or begin < 0 or base + end > size:
            raise NativeLoadError(f"{file}: tensor {name} has inconsistent offsets {begin}..{end} for shape {shape}")
        entries[name] = _Entry(file, dtype, shape, base + begin, end - begin)
    return entries


def checkpoint_entries(path: Path) -> dict[str, _Entry]:
    """Every tensor of a folder's safetensors checkpoint (single file or index + shards), by name."""
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        if not weight_map:
            raise NativeLoadError(f"{index}: no weight_map")
        entries: dict[str, _Entry] = {}
        for shard in sorted(set(weight_map.values())):
            file = path / shard
            if not file.is_file():
                raise NativeLoadError(f"{path}: shard {shard} named in {INDEX_FILE} is missing")
            for name, entry in _read_header(file).items():
                if weight_map.get(name) == shard:
                    entries[name] = entry
        absent = sorted(set(weight_map) - set(entries))
        if absent:
            raise NativeLoadError(f"{path}: {len(absent)} tensor(s) of {INDEX_FILE} are not in their shard, "
                                  f"e.g. {absent[:3]}")
        return entries
    single = path / SINGLE_FILE
    if single.is_file():
        return _read_header(single)
    raise NativeLoadError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} (the native loader reads safetensors weights "
                          "only; load other formats with trust_remote_code=True)")


_CHUNK_BYTES = 32 * 1024 * 1024  # converting dtypes: read this much at a time into a reused buffer


def _read_into(handle, file: Path, start: int, view: memoryview) -> None:
    handle.seek(start)
    done, total = 0, len(view)
    while done < total:
        got = handle.readinto(view[done:])
        if not got:
            raise NativeLoadError(f"{file}: truncated at byte {start + done}")
        done += got


def _bytes(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy()) if tensor.numel() else memoryview(bytearray())


def _read_tensor(handle, entry: _Entry, dtype: torch.dtype | None = None,
                 scratch: torch.Tensor | None = None) -> torch.Tensor:
    """The tensor read straight from the file into its final storage (no memory map, no full-size copy).

    With another ``dtype``, the file's values go through ``scratch`` (a reused byte buffer) and are converted
    into the final tensor chunk by chunk, so a conversion never holds the tensor twice.
    """
    if dtype is None or dtype == entry.dtype:
        tensor = torch.empty(entry.shape, dtype=entry.dtype)
        _read_into(handle, entry.file, entry.start, _bytes(tensor))
        return tensor
    if scratch is None:
        scratch = torch.empty(_CHUNK_BYTES, dtype=torch.uint8)
    tensor = torch.empty(entry.shape, dtype=dtype)
    flat = tensor.view(-1)
    size = entry.dtype.itemsize
    step = max(1, scratch.numel() // size)
    for first in range(0, flat.numel(), step):
        count = min(step, flat.numel() - first)
        part = scratch[:count * size]
        _read_into(handle, entry.file, entry.start + first * size, _bytes(part))
        flat[first:first + count].copy_(part.view(entry.dtype))
    return tensor


def iter_tensors(entries: dict[str, _Entry], dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` file by file, in file order, cast to ``dtype`` when given (floating tensors only);
    one tensor in memory at a time beyond what the caller keeps."""
    if sys.byteorder != "little":
        raise NativeLoadError("the native loader reads safetensors (little-endian) on little-endian machines only")
    by_file: dict[Path, list[tuple[str, _Entry]]] = {}
    for name, entry in entries.items():
        by_file.setdefault(entry.file, []).append((name, entry))
    scratch = None
    for file in sorted(by_file):
        with open(file, "rb", buffering=0) as handle:
            for name, entry in sorted(by_file[file], key=lambda item: item[1].start):
                cast = dtype if dtype is not None and entry.dtype.is_floating_point and dtype != entry.dtype else None
                if cast is not None and scratch is None:
                    scratch = torch.empty(_CHUNK_BYTES - _CHUNK_BYTES % 8, dtype=torch.uint8)
                yield name, _read_tensor(handle, entry, cast, scratch)


# -- the model ------------------------------------------------------------------------------------

def _build_on_meta(arch: NativeArchitecture) -> nn.Module:
    with torch.device("meta"):
        model = arch.model_class(arch.config)
    # Buffers computed at construction (the rotary inverse frequencies) must be real: rebuild them.
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=arch.config)
    return model


def load_native(path: Path, *, dtype: torch.dtype = torch.float32, bidirectional: bool = True,
                hf_config: dict[str, Any] | None = None) -> nn.Module:
    """A Dream or LLaDA folder as ``Qwen2ForCausalLM``/``LlamaForCausalLM`` (eval mode), no remote code.

    ``bidirectional`` (the default) runs the decoder with full attention (``config.is_causal = False``), as
    both checkpoints were trained. Tensors are read one at a time into the parameters (cast to ``dtype``).
    """
    path = Path(path)
    arch = native_architecture(path, hf_config)
    arch.config.is_causal = not bidirectional
    entries = checkpoint_entries(path)
    model = _build_on_meta(arch)
    expected = {name: param for name, param in model.named_parameters()}  # tied weights appear once
    tied = bool(getattr(arch.config, "tie_word_embeddings", False))
    if tied:
        expected.pop("lm_head.weight", None)
    # Check every name and shape before reading any data.
    plan: dict[str, str] = {}
    unexpected: list[str] = []
    for source, entry in sorted(entries.items()):
        target = arch.rename(source)
        if target is None or (tied and target == "lm_head.weight"):
            continue  # not a parameter (rotary buffers), or a head that a tied checkpoint still stores
        if target in plan.values():
            raise NativeLoadError(f"{path}: two tensors map to {target} ({source} and another)")
        if target not in expected:
            unexpected.append(source)
            continue
        if tuple(expected[target].shape) != entry.shape:
            raise NativeLoadError(f"{path}: tensor {source} has shape {entry.shape}, but config.json implies "
                                  f"{tuple(expected[target].shape)} for {target}")
        plan[source] = target
    if unexpected:
        raise NativeLoadError(f"{path}: {len(unexpected)} tensor(s) that this {arch.source} layout does not have, "
                              f"e.g. {sorted(unexpected)[:5]}")
    missing = sorted(set(expected) - set(plan.values()))
    if missing:
        raise NativeLoadError(f"{path}: {len(missing)} parameter(s) missing from the checkpoint, e.g. {missing[:5]}")
    for source, tensor in iter_tensors({name: entries[name] for name in plan}, dtype):
        target = plan[source]
        module_name, _, leaf = target.rpartition(".")
        module = model.get_submodule(module_name)
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=expected[target].requires_grad)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise NativeLoadError(f"{path}: not loaded: {left[:5]}")
    model.config.dtype = dtype
    return model.eval()


__all__ = [
    "NATIVE_MODEL_TYPES", "NativeArchitecture", "NativeLoadError", "checkpoint_entries", "iter_tensors",
    "load_native", "native_architecture", "native_model_type", "supported_model_types",
]
