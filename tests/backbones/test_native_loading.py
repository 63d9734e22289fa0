"""Native loading of Dream and LLaDA folders (``backbones/native.py``): no remote code, real layouts.

The folders are tiny random ones with the real config keys, tensor names, special-token ids and chat
templates (``tests/real_arch.py``). The loaded models are checked against a forward pass written here from
the checkpoint's own tensors and names (float64, the architectures as their modelling files describe them).
"""
from __future__ import annotations

import builtins
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pyserini_diffret.backbones import BACKBONES, detect_backbone
from pyserini_diffret.backbones.base import load_tokenizer
from pyserini_diffret.backbones.native import (
    NativeLoadError,
    checkpoint_entries,
    iter_tensors,
    load_native,
    native_architecture,
)
from tests.real_arch import (
    DREAM_MASK_ID,
    DREAM_VOCAB,
    LLADA_MASK_ID,
    LLADA_VOCAB,
    WRITERS,
)

FAMILIES = ["dream", "llada"]
TEXT = 'Query: "what reduces fractures?". The words are: "'


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-arch")
    return {name: write(root / name) for name, write in WRITERS.items()}


@pytest.fixture(scope="module")
def adapters(folders):
    return {name: _load(name, folders[name]) for name in FAMILIES}


def _load(name, path, dtype=torch.float32, trust_remote_code=False):
    return BACKBONES[name].load(Path(path), mask_token=None, dtype=dtype, trust_remote_code=trust_remote_code)


def _ids(adapter, text=TEXT, k=3):
    ids = adapter.tokenizer.encode(text, add_special_tokens=False) + [adapter.layout.mask_id] * k
    return ids + list(adapter.layout.tail_ids)


def _batch(rows, pad_id):
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.tensor(row)
        mask[i, length - len(row):] = 1
    return input_ids, mask


# -- a forward pass from the checkpoint's tensors -------------------------------------------------

def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    return {name: t.double().numpy() for f in files for name, t in load_file(str(f)).items()}


def _rms(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def _rope(x, positions, theta):
    """Rotary embedding on ``x`` [heads, L, d]: frequencies theta^(-2i/d), rotate-half layout."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    angles = positions[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    rotated = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rotated * sin


def _attention(q, k, v, keep):
    """Bidirectional attention; ``keep`` [L] masks padded keys only. q [H, L, d], k/v [KV, L, d]."""
    groups = q.shape[0] // k.shape[0]
    k, v = np.repeat(k, groups, axis=0), np.repeat(v, groups, axis=0)  # kv head j serves q heads j*g..
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    scores = np.where(keep[None, None, :], scores, -np.inf)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    return (scores / scores.sum(-1, keepdims=True)) @ v


def _silu(x):
    return x / (1.0 + np.exp(-x))


def reference_forward(family: str, path: Path, ids: list[int], keep: np.ndarray, positions: np.ndarray):
    """Final normed hidden states [L, H] and logits [L, V] of one row, from the real tensor names."""
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    w = _tensors(path)
    if family == "dream":
        heads, kv, layers = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
        eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
        x = w["model.embed_tokens.weight"][ids]
    else:
        heads, kv, layers = cfg["n_heads"], cfg["n_kv_heads"], cfg["n_layers"]
        eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
        x = w["model.transformer.wte.weight"][ids]
    length, hidden = x.shape
    d = hidden // heads
    for n in range(layers):
        if family == "dream":
            p = f"model.layers.{n}."
            h = _rms(x, w[p + "input_layernorm.weight"], eps)
            q = h @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]
            k = h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]
            v = h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]
            o_proj = w[p + "self_attn.o_proj.weight"]
            post, gate, up, down = (w[p + "post_attention_layernorm.weight"], w[p + "mlp.gate_proj.weight"],
                                    w[p + "mlp.up_proj.weight"], w[p + "mlp.down_proj.weight"])
        else:
            p = f"model.transformer.blocks.{n}."
            h = _rms(x, w[p + "attn_norm.weight"], eps)
            q, k, v = h @ w[p + "q_proj.weight"].T, h @ w[p + "k_proj.weight"].T, h @ w[p + "v_proj.weight"].T
            o_proj = w[p + "attn_out.weight"]
            # LLaDALlamaBlock: ff_out(act(ff_proj(h)) * up_proj(h)), act = SiLU
            post, gate, up, down = (w[p + "ff_norm.weight"], w[p + "ff_proj.weight"], w[p + "up_proj.weight"],
                                    w[p + "ff_out.weight"])
        q = _rope(q.reshape(length, heads, d).transpose(1, 0, 2), positions, theta)
        k = _rope(k.reshape(length, kv, d).transpose(1, 0, 2), positions, theta)
        v = v.reshape(length, kv, d).transpose(1, 0, 2)
        attended = _attention(q, k, v, keep).transpose(1, 0, 2).reshape(length, hidden)
        x = x + attended @ o_proj.T
        h = _rms(x, post, eps)
        x = x + (_silu(h @ gate.T) * (h @ up.T)) @ down.T
    if family == "dream":
        final = _rms(x, w["model.norm.weight"], eps)
        return final, final @ w["lm_head.weight"].T
    final = _rms(x, w["model.transformer.ln_f.weight"], eps)
    return final, final @ w["model.transformer.ff_out.weight"].T


# -- loading without remote code ------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILIES)
def test_real_layout_loads_natively(folders, adapters, name):
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    config = json.loads((folders[name] / "config.json").read_text(encoding="utf-8"))
    assert "auto_map" in config and not list(folders[name].glob("*.py"))  # code referenced, none present
    assert detect_backbone(folders[name]) == name
    adapter = adapters[name]
    assert type(adapter.model) is {"dream": Qwen2ForCausalLM, "llada": LlamaForCausalLM}[name]
    assert adapter.model.config.is_causal is False
    assert adapter.layout.mask_id == {"dream": DREAM_MASK_ID, "llada": LLADA_MASK_ID}[name]
    assert adapter.vocab_size == {"dream": DREAM_VOCAB, "llada": LLADA_VOCAB}[name]
    assert adapter.hidden_size == 32 and adapter.precision == "fp32" and adapter.max_positions is None
    tail = adapter.tokenizer.convert_ids_to_tokens(list(adapter.layout.tail_ids))
    assert tail == {"dream": ['"', "<|im_end|>", "<|endoftext|>"], "llada": ['"', "<|eot_id|>", "<|endoftext|>"]}[name]
    assert not adapter.model.training


def test_llada_config_mapping(folders):
    arch = native_architecture(folders["llada"])
    config = arch.config
    raw = json.loads((folders["llada"] / "config.json").read_text(encoding="utf-8"))
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (
        raw["d_model"], raw["n_layers"], raw["n_heads"], raw["n_kv_heads"])
    assert config.intermediate_size == raw["mlp_hidden_size"]
    assert config.vocab_size == raw["embedding_size"]
    assert config.max_position_embeddings == raw["max_sequence_length"]
    assert config.rms_norm_eps == raw["rms_norm_eps"]
    assert config.rope_parameters["rope_theta"] == raw["rope_theta"]
    assert config.head_dim == raw["d_model"] // raw["n_heads"]
    assert not config.tie_word_embeddings and not config.attention_bias and not config.mlp_bias
    assert config.pad_token_id is None  # LLaDA's wte has no padding_idx (Dream's has, at its pad id)
    rename = arch.rename
    assert rename("model.transformer.blocks.1.ff_proj.weight") == "model.layers.1.mlp.gate_proj.weight"
    assert rename("model.transformer.blocks.1.up_proj.weight") == "model.layers.1.mlp.up_proj.weight"
    assert rename("model.transformer.blocks.1.ff_out.weight") == "model.layers.1.mlp.down_proj.weight"
    assert rename("model.transformer.ff_out.weight") == "lm_head.weight"
    assert rename("model.transformer.blocks.0.attn_out.weight") == "model.layers.0.self_attn.o_proj.weight"


def test_dream_config_mapping(folders):
    config = native_architecture(folders["dream"]).config
    raw = json.loads((folders["dream"] / "config.json").read_text(encoding="utf-8"))
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "hidden_act"):
        assert getattr(config, key) == raw[key], key
    assert config.rope_parameters["rope_theta"] == raw["rope_theta"]
    assert config.sliding_window is None and set(config.layer_types) == {"full_attention"}
    assert not config.tie_word_embeddings
    assert config.pad_token_id == raw["pad_token_id"]  # DreamBaseModel: nn.Embedding(..., padding_idx=pad_token_id)


@pytest.mark.parametrize("name", FAMILIES)
def test_hidden_states_and_logits_match_a_forward_pass_from_the_checkpoint(folders, adapters, name):
    adapter = adapters[name]
    ids = _ids(adapter)
    input_ids, mask = _batch([ids], adapter.layout.pad_id)
    with torch.no_grad():
        hidden = adapter.hidden_states(input_ids, mask)[0].double().numpy()
        logits = adapter.lm_head(torch.from_numpy(hidden).float()).double().numpy()
    ref_hidden, ref_logits = reference_forward(name, folders[name], ids, np.ones(len(ids), bool),
                                               np.arange(len(ids), dtype=np.float64))
    np.testing.assert_allclose(hidden, ref_hidden, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(logits, ref_logits, atol=2e-3, rtol=1e-4)
    # The slots read the same values (the engine's read-out: K slots before the tail, unshifted).
    k, t = 3, len(adapter.layout.tail_ids)
    with torch.no_grad():
        slot_hidden, slot_logits = adapter.slot_states(input_ids, mask, torch.arange(k), t)
    np.testing.assert_allclose(slot_hidden[0].double().numpy(), ref_hidden[-k - t:-t], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(slot_logits[0].double().numpy(), ref_logits[-k - t:-t], atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_left_padded_rows_match_the_forward_pass(folders, adapters, name):
    """Padding is masked as keys only; positions start at each row's first real token (as the adapters do)."""
    adapter = adapters[name]
    short, long = _ids(adapter, "bone"), _ids(adapter)
    input_ids, mask = _batch([short, long], adapter.layout.pad_id)
    with torch.no_grad():
        hidden = adapter.hidden_states(input_ids, mask)
    pad = len(long) - len(short)
    ref, _ = reference_forward(name, folders[name], input_ids[0].tolist(), mask[0].numpy().astype(bool),
                               np.clip(np.arange(len(long)) - pad, 0, None).astype(np.float64))
    np.testing.assert_allclose(hidden[0, pad:].double().numpy(), ref[pad:], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_attention_is_bidirectional(folders, adapters, name):
    """A later token changes an earlier position's hidden state; the same weights run causally do not."""
    adapter = adapters[name]
    ids = _ids(adapter)
    input_ids, mask = _batch([ids], adapter.layout.pad_id)
    changed = input_ids.clone()
    changed[0, -1] = adapter.tokenizer.convert_tokens_to_ids("<|endoftext|>") - 1  # a different last token
    assert changed[0, -1] != input_ids[0, -1]
    with torch.no_grad():
        moved = (adapter.hidden_states(changed, mask) - adapter.hidden_states(input_ids, mask))[0].abs().amax(-1)
    assert (moved > 1e-4).all(), moved  # every position, the first one included, sees the last token

    causal = load_native(folders[name], bidirectional=False)
    assert causal.config.is_causal is True
    with torch.no_grad():
        before = causal.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        after = causal.model(input_ids=changed, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(after[0, :-1], before[0, :-1], atol=1e-6, rtol=0)
    assert (after[0, -1] - before[0, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_load(folders, adapters, name):
    adapter = _load(name, folders[name], dtype=torch.bfloat16)
    assert adapter.precision == "bf16"
    assert {p.dtype for p in adapter.parameters()} == {torch.bfloat16}
    assert adapter.model.model.rotary_emb.inv_freq.dtype == torch.float32
    input_ids, mask = _batch([_ids(adapter)], adapter.layout.pad_id)
    with torch.no_grad():
        low = adapter.hidden_states(input_ids, mask).float()
        full = adapters[name].hidden_states(input_ids, mask)
    torch.testing.assert_close(low, full, atol=0.15, rtol=0.05)
    fp32 = dict(adapters[name].named_parameters())
    for key, value in adapter.named_parameters():
        torch.testing.assert_close(value, fp32[key].to(torch.bfloat16), atol=0, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_checkpoint_loads_in_either_precision(tmp_path, name):
    folder = WRITERS[name](tmp_path / name, seed=3, dtype="bfloat16", tokenizer=False)
    entries = checkpoint_entries(folder)
    assert {entry.dtype for entry in entries.values()} == {torch.bfloat16}
    as_bf16 = load_native(folder, dtype=torch.bfloat16)
    as_fp32 = load_native(folder, dtype=torch.float32)
    for (key, low), (_, full) in zip(as_bf16.named_parameters(), as_fp32.named_parameters()):
        assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
        torch.testing.assert_close(full, low.float(), atol=0, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_sharded_load_equals_single_file(tmp_path, folders, name):
    folder = WRITERS[name](tmp_path / name, shards=3, tokenizer=False)
    index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))
    assert len(set(index["weight_map"].values())) == 3 and not (folder / "model.safetensors").exists()
    sharded = load_native(folder)
    single = load_native(folders[name])
    assert [k for k, _ in sharded.named_parameters()] == [k for k, _ in single.named_parameters()]
    for (key, a), (_, b) in zip(sharded.named_parameters(), single.named_parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=key)


@pytest.mark.parametrize("name", FAMILIES)
def test_tensors_are_read_exactly(tmp_path, folders, name):
    """The in-place safetensors reader gives the same tensors as the safetensors library."""
    from safetensors.torch import load_file

    expected = load_file(str(folders[name] / "model.safetensors"))
    got = dict(iter_tensors(checkpoint_entries(folders[name])))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype
        torch.testing.assert_close(got[key], value, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_tensors_are_converted_chunk_by_chunk(monkeypatch, folders, dtype):
    """Another dtype is converted through a small buffer: the same values as converting the whole tensor."""
    from safetensors.torch import load_file

    from pyserini_diffret.backbones import native

    monkeypatch.setattr(native, "_CHUNK_BYTES", 1000)  # many chunks, and a last partial one
    expected = load_file(str(folders["llada"] / "model.safetensors"))
    got = dict(iter_tensors(checkpoint_entries(folders["llada"]), dtype))
    for key, value in expected.items():
        assert got[key].dtype == dtype and got[key].shape == value.shape
        torch.testing.assert_close(got[key], value.to(dtype), atol=0, rtol=0)


def test_same_seed_same_bytes(tmp_path):
    for name, write in WRITERS.items():
        a, b = write(tmp_path / f"{name}-a", seed=7), write(tmp_path / f"{name}-b", seed=7)
        for file in sorted(p.name for p in a.iterdir()):
            assert (a / file).read_bytes() == (b / file).read_bytes(), (name, file)
        c = write(tmp_path / f"{name}-c", seed=8, tokenizer=False)
        assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_load_model_encodes_with_a_real_layout_folder(folders):
    from pyserini_diffret import load_model

    for name in FAMILIES:
        model = load_model(folders[name])
        reps = model.encode_queries(["what reduces fractures?", "bone"])
        assert reps.slots.shape[:2] == (2, model.config.slots("query"))
        assert np.isfinite(reps.dense).all()


# -- the LM head moves with the adapter -----------------------------------------------------------

@pytest.mark.parametrize("name", FAMILIES)
def test_head_is_registered_once_and_moves(folders, adapters, name):
    adapter = _load(name, folders[name])
    head = adapter.model.get_output_embeddings()
    assert dict(adapter.named_modules())["model.lm_head"] is head
    assert sum(1 for m in adapter.modules() if m is head) == 1
    names = [n for n, _ in adapter.named_parameters()]
    assert len(names) == len(set(names)) and "model.lm_head.weight" in names
    adapter.to(torch.float64)
    input_ids, mask = _batch([_ids(adapter)], adapter.layout.pad_id)
    with torch.no_grad():
        hidden, logits = adapter.slot_states(input_ids, mask, torch.arange(3), len(adapter.layout.tail_ids))
        expected = adapters[name].slot_states(input_ids, mask, torch.arange(3), len(adapter.layout.tail_ids))
    assert hidden.dtype == logits.dtype == torch.float64
    torch.testing.assert_close(logits.float(), expected[1], atol=1e-4, rtol=1e-4)


# -- errors ---------------------------------------------------------------------------------------

def _copy_with_config(tmp_path, source, **changes):
    folder = tmp_path / "copy"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_unknown_model_type_is_named_by_the_native_loader(tmp_path, folders):
    folder = _copy_with_config(tmp_path, folders["dream"], model_type="lladamoe")
    expected = "model_type 'lladamoe' has no native loader (supported: 'Dream', 'llada')"
    with pytest.raises(NativeLoadError, match=re.escape(expected)):
        load_native(folder)
    # The adapter names it too, with the choices and the option.
    with pytest.raises(ValueError) as error:
        _load("llada", folder)
    message = str(error.value)
    assert "model_type 'lladamoe'" in message and "'Dream', 'llada'" in message and "trust_remote_code=True" in message
    assert str(folder) in message


def test_unknown_model_type_is_named_by_detect_backbone(tmp_path, folders):
    folder = _copy_with_config(tmp_path, folders["dream"], model_type="mystery", architectures=["MysteryLM"])
    with pytest.raises(ValueError) as error:
        detect_backbone(folder)
    message = str(error.value)
    assert "model_type='mystery'" in message and "'dream'" in message and "'llada*'" in message
    assert "ForMaskedLM" in message and "mlm, dream, llada, ar" in message


@pytest.mark.parametrize(("change", "named"), [
    ({"block_type": "sequential"}, "block_type='sequential'"),
    ({"include_bias": True}, "include_bias=True"),
    ({"scale_logits": True, "alibi": True}, "alibi=True"),
    ({"layer_norm_type": "default"}, "layer_norm_type='default'"),
])
def test_unsupported_llada_variants_are_refused(tmp_path, folders, change, named):
    folder = _copy_with_config(tmp_path, folders["llada"], **change)
    with pytest.raises(NativeLoadError, match=re.escape(named)) as error:
        load_native(folder)
    assert "trust_remote_code=True" in str(error.value)


def test_checkpoint_that_does_not_fit_the_config_is_refused(tmp_path, folders):
    folder = _copy_with_config(tmp_path, folders["llada"], mlp_hidden_size=40)
    with pytest.raises(NativeLoadError, match=re.escape("blocks.0.ff_out.weight has shape (32, 96), but config.json "
                                                        "implies (32, 40) for model.layers.0.mlp.down_proj.weight")):
        load_native(folder)
    folder = _copy_with_config(tmp_path / "b", folders["dream"], num_hidden_layers=1)
    with pytest.raises(NativeLoadError, match=r"tensor\(s\) that this Dream layout does not have"):
        load_native(folder)
    folder = _copy_with_config(tmp_path / "c", folders["dream"], num_hidden_layers=3)
    with pytest.raises(NativeLoadError, match=r"parameter\(s\) missing from the checkpoint"):
        load_native(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(NativeLoadError, match="no model.safetensors or model.safetensors.index.json"):
        load_native(folder)


# -- remote code is opt-in and never asked for -----------------------------------------------------

_MARKER_CODE = textwrap.dedent('''\
    from pathlib import Path
    Path({marker!r}).write_text("ran")
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast

    class {cls}({base}):
        model_type = "{model_type}"
''')


def _plant(folder: Path, module: str, cls: str, base: str, model_type: str = "x") -> Path:
    """A module in the folder that writes ``<folder>/<module>.ran`` when imported (from wherever it is copied)."""
    marker = folder / f"{module}.ran"
    (folder / f"{module}.py").write_text(_MARKER_CODE.format(marker=str(marker), cls=cls, base=base,
                                                             model_type=model_type), encoding="utf-8")
    return marker


@pytest.fixture
def no_prompt(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"asked on stdin: {args}")

    monkeypatch.setattr(builtins, "input", refuse)
    monkeypatch.setattr(sys, "stdin", None)


def test_remote_tokenizer_is_refused_without_running_its_code(tmp_path, folders, no_prompt):
    folder = tmp_path / "remote-tokenizer"
    shutil.copytree(folders["llada"], folder)
    marker = _plant(folder, "evil_tokenizer", "EvilTokenizer", "PreTrainedTokenizerFast")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.update(auto_map={"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]}, tokenizer_class="EvilTokenizer")
    config_file.write_text(json.dumps(config), encoding="utf-8")
    expected = re.escape(f"{folder}: the tokenizer (evil_tokenizer.EvilTokenizer, auto_map in tokenizer_config.json) "
                         "ships as code in the model folder; it is not run unless you trust it: load with "
                         "trust_remote_code=True (CLI: --trust-remote-code)")
    with pytest.raises(ValueError, match=expected):
        load_tokenizer(folder, trust_remote_code=False)
    with pytest.raises(ValueError, match=expected):
        _load("llada", folder)
    assert not marker.exists()


def test_real_layout_folders_run_none_of_their_code(tmp_path, folders, no_prompt):
    """The Dream tokenizer (DreamTokenizer: Qwen2's) and both models load natively; the folder's code is
    present but never imported."""
    for name in FAMILIES:
        folder = tmp_path / name
        shutil.copytree(folders[name], folder)
        markers = [_plant(folder, f"configuration_{name}", "RemoteConfig", "PreTrainedConfig", name),
                   _plant(folder, f"modeling_{name}", "RemoteModel", "PreTrainedConfig", name)]
        if name == "dream":
            markers.append(_plant(folder, "tokenization_dream", "DreamTokenizer", "PreTrainedTokenizerFast", name))
        adapter = _load(name, folder)
        assert adapter.layout.mask_id == {"dream": DREAM_MASK_ID, "llada": LLADA_MASK_ID}[name]
        assert [m.name for m in markers if m.exists()] == []


def test_dream_tokenizer_is_qwen2s(folders):
    from transformers import Qwen2Tokenizer

    tokenizer = load_tokenizer(folders["dream"])
    assert type(tokenizer) is Qwen2Tokenizer
    assert len(tokenizer) == 151667
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]) == [
        151643, 151644, 151645, 151666]
    text = tokenizer.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.encode("<|mask|>", add_special_tokens=False) == [151666]


def test_llada_tokenizer_and_template(folders):
    tokenizer = load_tokenizer(folders["llada"])
    assert tokenizer.convert_tokens_to_ids(
        ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    ) == [126080, 126081, 126336, 126346, 126347, 126348]
    text = tokenizer.apply_chat_template([{"role": "system", "content": "S "}, {"role": "user", "content": " U"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text == ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_trust_remote_code_runs_the_folders_code(tmp_path, folders):
    """The opt-in path still loads the folder's own code (in a subprocess: the module cache stays there)."""
    from tests.conftest import run_python

    folder = tmp_path / "dream"
    shutil.copytree(folders["dream"], folder)
    marker = _plant(folder, "configuration_dream", "DreamConfig", "PreTrainedConfig", "Dream")
    script = textwrap.dedent(f'''\
        import sys, torch
        from pathlib import Path
        from pyserini_diffret.backbones import BACKBONES
        try:
            BACKBONES["dream"].load(Path({str(folder)!r}), mask_token=None, dtype=torch.float32, trust_remote_code=True)
        except Exception as error:  # the planted folder has no modeling_dream.py: loading fails after running code
            print("failed:", type(error).__name__)
    ''')
    proc = run_python("-c", script, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    assert marker.exists(), proc.stdout + proc.stderr


def test_saved_dream_tokenizer_is_the_library_class(tmp_path, folders, no_prompt):
    """Saved again (as an export does), the Dream tokenizer names Qwen2Tokenizer and no remote code; a folder
    whose tokenizer_class is a library class loads with it even beside an auto_map, whose code never runs."""
    from transformers import Qwen2Tokenizer

    saved = tmp_path / "saved"
    load_tokenizer(folders["dream"]).save_pretrained(str(saved))
    config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in config and config["tokenizer_class"] == "Qwen2Tokenizer"
    marker = _plant(saved, "tokenization_dream", "DreamTokenizer", "PreTrainedTokenizerFast", "Dream")
    config["auto_map"] = {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}
    (saved / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer = load_tokenizer(saved)
    assert type(tokenizer) is Qwen2Tokenizer and tokenizer.convert_tokens_to_ids("<|mask|>") == DREAM_MASK_ID
    assert not marker.exists()


def test_remote_llada_head_is_found_again_by_a_second_adapter(tmp_path):
    """LLaDA's remote-code path (model_type "llada" on the model): the head leaves the model for a pass-through
    and is registered on the adapter, once; a second adapter on the same model finds it again."""
    from tests.tiny_models import make_llada

    import transformers

    folder = make_llada(tmp_path / "tiny")
    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    config.is_causal = False
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), config=config, trust_remote_code=False)
    reference = BACKBONES["llada"].from_model(model, load_tokenizer(folder))  # stock path: head inside model
    input_ids, mask = _batch([_ids(reference)], reference.layout.pad_id)
    args = (input_ids, mask, torch.arange(3), len(reference.layout.tail_ids))
    with torch.no_grad():
        expected = reference.slot_states(*args)
    head = model.lm_head
    model.config.model_type = "llada"
    first = BACKBONES["llada"].from_model(model, reference.tokenizer)
    second = BACKBONES["llada"].from_model(model, reference.tokenizer, logit_shift=1)
    for adapter in (first, second):
        assert adapter._head is head and dict(adapter.named_modules())["_head"] is head
        names = [n for n, _ in adapter.named_parameters()]
        assert len(names) == len(set(names)) and names.count("_head.weight") == 1
        assert "model.lm_head.weight" not in names
    with torch.no_grad():
        got = first.slot_states(*args)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)
    first.to(torch.float64)
    assert head.weight.dtype == torch.float64


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_export_of_a_natively_loaded_folder(tmp_path, folders, name):
    """The natively loaded model traces to ONNX and the export encodes as the torch model does."""
    from pyserini_diffret import load_model
    from pyserini_diffret.onnx_export.exporter import export_model

    exported = export_model(folders[name], tmp_path / "onnx", verify=True)  # raises when it misses the limits
    texts = ["what reduces fractures?", "bone"]
    torch_reps = load_model(folders[name]).encode_queries(texts)
    onnx_reps = load_model(exported).encode_queries(texts)
    np.testing.assert_allclose(onnx_reps.dense, torch_reps.dense, atol=1e-4)
    assert [ids.tolist() for ids in onnx_reps.term_ids] == [ids.tolist() for ids in torch_reps.term_ids]


@pytest.mark.parametrize(("name", "key", "head"), [("dream", "tie_word_embeddings", "lm_head.weight"),
                                                   ("llada", "weight_tying", "model.transformer.ff_out.weight")])
def test_tied_embeddings(tmp_path, folders, name, key, head):
    """With tied embeddings (no head tensor in the checkpoint) the LM head is the input embedding."""
    from safetensors.torch import load_file, save_file

    folder = _copy_with_config(tmp_path, folders[name], **{key: True})
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors[head]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model = load_native(folder)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and len(names) == len(set(names))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        out = model(input_ids=ids)
        hidden = model.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out.logits, hidden @ model.model.embed_tokens.weight.T, atol=1e-5, rtol=1e-5)
