"""Tiny random folders laid out like the real Dream and LLaDA checkpoints (for the native loader's tests).

``write_dream_folder(path, ...)`` and ``write_llada_folder(path, ...)`` write, deterministically from
``seed``:

- ``config.json`` with the real checkpoint's keys and ``model_type``/``architectures``/``auto_map`` values
  (the auto_map target files are not written; the sizes are small),
- the weights under the real tensor names, as seeded numpy random values, in ``model.safetensors`` or
  (``shards`` > 1) ``model-0000i-of-0000n.safetensors`` shards with ``model.safetensors.index.json``,
- a byte-level BPE tokenizer with the real special tokens at their real ids, padded with filler tokens up
  to them, the real vocabulary (embedding) size and the real chat template.

Where each fact comes from:

- Dream (Dream-org/Dream-v0-Instruct-7B): ``configuration_dream.py`` and ``modeling_dream.py`` (public copies,
  e.g. in ZHZisZZ/dllm ``dllm/pipelines/dream/models``): config keys and defaults (``mask_token_id`` 151666,
  ``pad_token_id`` 151643, ``rms_norm_eps``, ``rope_theta``, ``tie_word_embeddings`` false), Qwen2 weight
  names, q/k/v with bias, ``DreamModel`` behind ``auto_map`` ``AutoModel``. Real sizes (hidden 3584, 28
  layers, 28 heads, 4 key/value heads, intermediate 18944, vocabulary 152064, rope_theta 1e6, eps 1e-6):
  DESIGN.md 2.9 and public configs quoting the checkpoint. ``tokenization_dream.py``: the tokenizer is a
  byte-level BPE over ``vocab.json``/``merges.txt`` (Qwen2's), ``<|endoftext|>`` for unknown/EOS/pad.
  Special-token ids are Qwen2.5's (``<|endoftext|>`` 151643, ``<|im_start|>`` 151644, ``<|im_end|>`` 151645,
  then ``<|object_ref_start|>`` ... ``<|file_sep|>`` 151646-151664), ``<|mask|>`` 151666 (DESIGN.md 1.1,
  DreamConfig.mask_token_id). Not confirmed from a file here, taken from the model card's tokenizer as we
  know it: ``<|beginoftext|>`` at 151665 as BOS, ``auto_map`` ``AutoTokenizer`` ->
  ``tokenization_dream.DreamTokenizer`` with ``tokenizer_class`` "DreamTokenizer", no ``tokenizer.json``,
  the default system turn "You are a helpful assistant." (the template below is Qwen2.5's without its
  tool-calling branches, which the retrieval prompts never reach).
- LLaDA (GSAI-ML/LLaDA-8B-Instruct): ``configuration_llada.py`` / ``modeling_llada.py`` (public copies, e.g.
  charleschen-ml/pa-dllm, ZHZisZZ/dllm): config keys, ``LLaDAModelLM`` behind ``auto_map``, weight names
  ``model.transformer.{wte, blocks.N.{q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out, attn_norm,
  ff_norm}, ln_f, ff_out}``. The 8B config's values (``activation_type`` silu, ``block_type`` llama,
  ``layer_norm_type`` rms, ``rms_norm_eps`` 1e-5, ``rope_theta`` 500000, ``max_sequence_length`` 4096,
  ``mlp_hidden_size`` 12288, 32/32 heads, ``vocab_size``=``embedding_size`` 126464, ``weight_tying`` false,
  ``include_bias``/``include_qkv_bias`` false, ``eos_token_id``/``pad_token_id`` 126081, ``mask_token_id``
  126336): public copies of its config.json. Token ids: ``<|mdm_mask|>`` 126336 (DESIGN.md, LLaDA README),
  ``<|endoftext|>`` 126081 (ML-GSAI/LLaDA generate.py and visualization), ``<|start_header_id|>`` 126346,
  ``<|end_header_id|>`` 126347, ``<|eot_id|>`` 126348 (ZHZisZZ/dllm ``dllm/utils/models.py``; 126348 is
  the end of turn in LLaDA's generate.py). ``<|startoftext|>`` at 126080 as BOS: LLaDA-V lists 126080 with
  126081/126346/126347 among its special ids; the name is from the model card's tokenizer as we know it.
  The tokenizer is a fast tokenizer (``tokenizer.json``, ``tokenizer_class`` "PreTrainedTokenizerFast", no
  remote code); its pre-tokenizer here is plain byte-level, not Llama-3's regex. The chat template is
  Llama-3's (BOS before the first turn, headers, trimmed content, ``<|eot_id|>``), as LLaDA's
  tokenizer_config.json carries it (dllm's rewrite in ``dllm/utils/models.py`` renders the same text).
  Filler ids between the special tokens are named ``<|filler_N|>`` here (the real names are not needed).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# -- facts -----------------------------------------------------------------------------------------

DREAM_VOCAB = 152064  # embedding rows (lm_head rows); the tokenizer has 151667 tokens
DREAM_SPECIALS = {
    151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>", 151646: "<|object_ref_start|>",
    151647: "<|object_ref_end|>", 151648: "<|box_start|>", 151649: "<|box_end|>", 151650: "<|quad_start|>",
    151651: "<|quad_end|>", 151652: "<|vision_start|>", 151653: "<|vision_end|>", 151654: "<|vision_pad|>",
    151655: "<|image_pad|>", 151656: "<|video_pad|>", 151657: "<tool_call>", 151658: "</tool_call>",
    151659: "<|fim_prefix|>", 151660: "<|fim_middle|>", 151661: "<|fim_suffix|>", 151662: "<|fim_pad|>",
    151663: "<|repo_name|>", 151664: "<|file_sep|>", 151665: "<|beginoftext|>", 151666: "<|mask|>",
}
# Qwen2.5's added tokens that are not "special" (they may appear in text): tool-call and fim markers.
_DREAM_NOT_SPECIAL = {151657, 151658, 151659, 151660, 151661, 151662, 151663, 151664}
DREAM_MASK_ID = 151666

LLADA_VOCAB = 126464  # vocab_size = embedding_size
LLADA_SPECIALS = {
    126080: "<|startoftext|>", 126081: "<|endoftext|>", 126336: "<|mdm_mask|>",
    126346: "<|start_header_id|>", 126347: "<|end_header_id|>", 126348: "<|eot_id|>",
}
LLADA_MASK_ID = 126336

DREAM_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)
LLADA_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Text the BPE merges are learned from (so that prompts do not tokenise to single bytes).
CORPUS = [
    "You are an AI assistant that can understand human language.",
    'Query: "what reduces fractures?". Use a few words to represent the query in a retrieval task. '
    "Make sure your words are in lowercase.",
    'Passage: "Vitamin D deficiency is associated with bone fractures." Use one word to represent the passage '
    "in a retrieval task. Make sure your word is in lowercase.",
    'The words are: "bone" The word is: "vitamin"',
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "The quick brown fox jumps over the lazy dog.",
    "Airflow over a swept wing changes the boundary layer transition point.",
    "Protein folding determines the function of enzymes inside the cell.",
]


# -- tokenizers ------------------------------------------------------------------------------------

def _byte_alphabet() -> list[str]:
    """The 256 byte-level characters, in byte order (GPT-2/Qwen2 byte-to-unicode mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _learn_merges(count: int) -> list[tuple[str, str]]:
    """A deterministic byte-level BPE: the most frequent pair first, ties broken by the pair itself."""
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words: dict[tuple[str, ...], int] = {}
    for text in CORPUS:
        for piece, _ in pre.pre_tokenize_str(text):
            words[tuple(piece)] = words.get(tuple(piece), 0) + 1
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: dict[tuple[str, str], int] = {}
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        words = merged
    return merges


def _bpe_vocab(first_special: int, merges: list[tuple[str, str]], filler: str) -> dict[str, int]:
    """Byte alphabet, merged tokens, then fillers up to ``first_special`` (exclusive)."""
    vocab: dict[str, int] = {}
    for token in [*_byte_alphabet(), *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    while len(vocab) < first_special:
        vocab[filler.format(len(vocab))] = len(vocab)
    return vocab


def _added_token(content: str, special: bool = True) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": special}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dream_tokenizer(path: Path) -> None:
    """vocab.json + merges.txt (byte-level BPE, 151643 regular tokens) and tokenizer_config.json with the
    24 added tokens at 151643-151666, as the real folder has them (its class is remote code: DreamTokenizer)."""
    merges = _learn_merges(400)
    vocab = _bpe_vocab(151643, merges, "ĠFILLER{}")
    _write_json(path / "vocab.json", vocab)
    (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    _write_json(path / "tokenizer_config.json", {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): _added_token(t, i not in _DREAM_NOT_SPECIAL)
                                 for i, t in sorted(DREAM_SPECIALS.items())},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "bos_token": "<|beginoftext|>",
        "chat_template": DREAM_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "mask_token": "<|mask|>",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "DreamTokenizer",
        "unk_token": None,
    })
    _write_json(path / "special_tokens_map.json", {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "mask_token": "<|mask|>",
        "pad_token": "<|endoftext|>",
    })


def write_llada_tokenizer(path: Path) -> None:
    """tokenizer.json (byte-level BPE, regular tokens 0-126079, specials and fillers 126080-126348) and a
    tokenizer_config.json naming the library's fast tokenizer (no remote code, as the real folder)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    merges = _learn_merges(400)
    vocab = _bpe_vocab(126080, merges, "ĠFILLER{}")
    added: list[tuple[int, str]] = []
    for i in range(126080, max(LLADA_SPECIALS) + 1):
        added.append((i, LLADA_SPECIALS.get(i, f"<|filler_{i}|>")))
    for i, token in added:
        vocab[token] = i
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([token for _, token in added])
    assert all(tokenizer.token_to_id(token) == i for i, token in added)
    tokenizer.save(str(path / "tokenizer.json"))
    _write_json(path / "tokenizer_config.json", {
        "added_tokens_decoder": {str(i): _added_token(t) for i, t in added},
        "bos_token": "<|startoftext|>",
        "chat_template": LLADA_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    _write_json(path / "special_tokens_map.json", {
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    })


# -- weights ---------------------------------------------------------------------------------------

def _arrays(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 values, in name order: norms near 1, biases small, matrices ~ N(0, 1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name in shapes:  # insertion order is the real layout's order
        shape = shapes[name]
        if "norm" in name or name.endswith("ln_f.weight"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif "embed_tokens" in name or "wte" in name:
            value = rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) / np.sqrt(shape[-1])
        arrays[name] = value.astype(np.float32)
    return arrays


def write_safetensors(path: Path, arrays: dict[str, np.ndarray], *, shards: int = 1, dtype: str = "float32") -> None:
    """``model.safetensors``, or ``shards`` files plus ``model.safetensors.index.json`` (names kept in order)."""
    import torch
    from safetensors.torch import save_file

    tensors = {name: torch.from_numpy(value).to(getattr(torch, dtype)).contiguous() for name, value in arrays.items()}
    names = list(tensors)
    if shards <= 1:
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
        return
    groups = [names[i::shards] for i in range(shards)]  # interleaved: every shard gets a share of each kind
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        file = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({name: tensors[name] for name in group}, str(path / file), metadata={"format": "pt"})
        weight_map.update({name: file for name in group})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_json(path / "model.safetensors.index.json",
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def dream_shapes(*, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int,
                 vocab: int = DREAM_VOCAB) -> dict[str, tuple[int, ...]]:
    head_dim = hidden // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for n in range(layers):
        p = f"model.layers.{n}."
        shapes.update({
            p + "self_attn.q_proj.weight": (heads * head_dim, hidden), p + "self_attn.q_proj.bias": (heads * head_dim,),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.k_proj.bias": (kv_heads * head_dim,),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.bias": (kv_heads * head_dim,),
            p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
        })
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def llada_shapes(*, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int,
                 vocab: int = LLADA_VOCAB) -> dict[str, tuple[int, ...]]:
    head_dim = hidden // heads
    shapes: dict[str, tuple[int, ...]] = {"model.transformer.wte.weight": (vocab, hidden)}
    for n in range(layers):
        p = f"model.transformer.blocks.{n}."
        shapes.update({
            p + "q_proj.weight": (hidden, hidden), p + "k_proj.weight": (kv_heads * head_dim, hidden),
            p + "v_proj.weight": (kv_heads * head_dim, hidden), p + "attn_out.weight": (hidden, hidden),
            p + "ff_proj.weight": (intermediate, hidden), p + "up_proj.weight": (intermediate, hidden),
            p + "ff_out.weight": (hidden, intermediate),
            p + "attn_norm.weight": (hidden,), p + "ff_norm.weight": (hidden,),
        })
    shapes["model.transformer.ln_f.weight"] = (hidden,)
    shapes["model.transformer.ff_out.weight"] = (vocab, hidden)
    return shapes


# -- folders ---------------------------------------------------------------------------------------

def dream_config(*, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                 intermediate: int | None = None, vocab: int = DREAM_VOCAB) -> dict[str, Any]:
    """Dream-v0-Instruct-7B's config.json keys, sizes scaled down."""
    return {
        "architectures": ["DreamModel"],
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate or 2 * hidden,
        "mask_token_id": DREAM_MASK_ID,
        "max_position_embeddings": 131072,
        "max_window_layers": layers,
        "model_type": "Dream",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pad_token_id": 151643,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.2",
        "use_cache": False,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


def llada_config(*, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int | None = None,
                 intermediate: int | None = None, vocab: int = LLADA_VOCAB) -> dict[str, Any]:
    """LLaDA-8B-Instruct's config.json keys, sizes scaled down (MHA as the real one unless ``kv_heads``)."""
    return {
        "activation_type": "silu",
        "alibi": False,
        "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
                     "AutoModel": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": hidden,
        "embedding_dropout": 0.0,
        "embedding_size": vocab,
        "eos_token_id": 126081,
        "flash_attention": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "init_cutoff_factor": None,
        "init_device": "meta",
        "init_fn": "mitchell",
        "init_std": 0.02,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "mask_token_id": LLADA_MASK_ID,
        "max_sequence_length": 4096,
        "mlp_hidden_size": intermediate or 3 * hidden,
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": heads,
        "n_kv_heads": kv_heads or heads,
        "n_layers": layers,
        "pad_token_id": 126081,
        "precision": "amp_bf16",
        "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "scale_logits": False,
        "transformers_version": "4.46.3",
        "use_cache": False,
        "vocab_size": vocab,
        "weight_tying": False,
    }


def write_dream_folder(path: Path | str, seed: int = 0, layers: int = 2, hidden: int = 32, *, heads: int = 4,
                       kv_heads: int = 2, intermediate: int | None = None, shards: int = 1,
                       dtype: str = "float32", tokenizer: bool = True) -> Path:
    """A random Dream-architecture folder (config, weights, tokenizer); same ``seed``, same bytes."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dream_config(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate)
    _write_json(path / "config.json", config)
    shapes = dream_shapes(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                          intermediate=config["intermediate_size"])
    write_safetensors(path, _arrays(shapes, seed), shards=shards, dtype=dtype)
    if tokenizer:
        write_dream_tokenizer(path)
    return path


def write_llada_folder(path: Path | str, seed: int = 0, layers: int = 2, hidden: int = 32, *, heads: int = 4,
                       kv_heads: int | None = None, intermediate: int | None = None, shards: int = 1,
                       dtype: str = "float32", tokenizer: bool = True) -> Path:
    """A random LLaDA-architecture folder (config, weights, tokenizer); same ``seed``, same bytes."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = llada_config(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate)
    _write_json(path / "config.json", config)
    shapes = llada_shapes(layers=layers, hidden=hidden, heads=heads, kv_heads=config["n_kv_heads"],
                          intermediate=config["mlp_hidden_size"])
    write_safetensors(path, _arrays(shapes, seed), shards=shards, dtype=dtype)
    if tokenizer:
        write_llada_tokenizer(path)
    return path


WRITERS = {"dream": write_dream_folder, "llada": write_llada_folder}
