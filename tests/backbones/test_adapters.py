"""The backbone adapters, tested directly on the tiny random models (no ``load_model``, no prompt builder).

``MaskedLMBackbone`` (mlm.py), ``DreamBackbone`` and ``LLaDABackbone`` (decoder.py) and
``AutoregressiveBackbone`` (ar.py): slot layout, slot read-out, attention direction, left padding,
sizes and spec, and the LM head's place in the module tree.
"""
from __future__ import annotations

import re

import pytest
import torch

from pyserini_diffret.backbones.ar import AutoregressiveBackbone
from pyserini_diffret.backbones.base import load_tokenizer
from pyserini_diffret.backbones.decoder import DreamBackbone, LLaDABackbone
from pyserini_diffret.backbones.mlm import MaskedLMBackbone
from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.core.prompts import SlotLayout
from pyserini_diffret.core.spec import ModelSpec

ONE_PASS = ["mlm", "dream", "llada"]
FAMILIES = [*ONE_PASS, "ar"]
DECODERS = ["dream", "llada", "ar"]
TEXTS = [
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "bone",
    "Vitamin D deficiency is associated with bone fractures and weak muscles in adults with diabetes.",
]
# The family's mask token, its end-of-turn token and EOS (the tail is '"', end of turn, EOS).
MASKS = {"mlm": "[MASK]", "dream": "<|mask|>", "llada": "<|mdm_mask|>"}
TAILS = {"mlm": ['"', "[SEP]"], "dream": ['"', "<|im_end|>", "<|endoftext|>"],
         "llada": ['"', "<|eot_id|>", "<|end_of_text|>"]}


def make_batch(adapter, texts, k):
    """``[start][text][MASK x K][tail]`` per text, left-padded with the layout's pad id (ar: the text alone)."""
    layout = adapter.layout
    slots = [layout.mask_id] * k if layout.mask_id is not None else []
    rows = [list(layout.start_ids) + adapter.tokenizer.encode(text, add_special_tokens=False) + slots
            + list(layout.tail_ids) for text in texts]
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), layout.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.tensor(row)
        attention_mask[i, length - len(row):] = 1
    return input_ids, attention_mask


def slot_states(adapter, input_ids, attention_mask, k):
    with torch.no_grad():
        return adapter.slot_states(input_ids, attention_mask, torch.arange(k), len(adapter.layout.tail_ids))


def full_hidden(adapter, input_ids, attention_mask):
    with torch.no_grad():
        return adapter.hidden_states(input_ids, attention_mask)


def other_token(adapter, token_id):
    """An ordinary text token different from ``token_id``."""
    for candidate in adapter.tokenizer.encode("fox lazy dog", add_special_tokens=False):
        if candidate != token_id:
            return candidate
    raise AssertionError("no replacement token")


# -- slot layout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ONE_PASS)
def test_mask_id_is_the_family_mask_token(adapters, name):
    adapter = adapters[name]
    tokenizer = adapter.tokenizer
    assert isinstance(adapter.layout, SlotLayout)
    mask_id = adapter.layout.mask_id
    assert isinstance(mask_id, int)
    assert mask_id == tokenizer.convert_tokens_to_ids(MASKS[name])
    assert tokenizer.convert_ids_to_tokens(mask_id) == MASKS[name]
    assert mask_id not in (tokenizer.unk_token_id, adapter.layout.pad_id)


@pytest.mark.parametrize("name", ONE_PASS)
def test_tail_is_quote_end_of_turn_eos(adapters, name):
    adapter = adapters[name]
    tokenizer, layout = adapter.tokenizer, adapter.layout
    assert tokenizer.decode(layout.tail_ids[:1]) == '"'
    assert tokenizer.convert_ids_to_tokens(list(layout.tail_ids)) == TAILS[name]
    assert layout.pad_id == tokenizer.pad_token_id
    if name == "mlm":
        assert layout.chat_template is False
        assert layout.start_ids == (tokenizer.cls_token_id,)
        assert layout.tail_ids[-1] == tokenizer.sep_token_id
    else:
        assert layout.chat_template is True
        assert layout.start_ids == ()
        assert layout.tail_ids[-1] == tokenizer.eos_token_id


def test_autoregressive_layout_has_no_slots(adapters):
    layout = adapters["ar"].layout
    assert layout.mask_id is None
    assert layout.tail_ids == ()
    assert layout.chat_template is True
    assert layout.pad_id == adapters["ar"].tokenizer.pad_token_id


@pytest.mark.parametrize(("name", "other"), [("mlm", "[CLS]"), ("dream", "<|im_start|>"),
                                             ("llada", "<|start_header_id|>")])
def test_mask_token_can_be_overridden(adapters, name, other):
    adapter = adapters[name]
    again = type(adapter).from_model(adapter.model, adapter.tokenizer, mask_token=other)
    assert again.layout.mask_id == adapter.tokenizer.convert_tokens_to_ids(other) != adapter.layout.mask_id


@pytest.mark.parametrize("name", ONE_PASS)
def test_missing_mask_token_is_named(adapters, name):
    adapter = adapters[name]
    expected = re.escape("tiny/folder: the tokenizer has no mask token '<|nope|>'")
    with pytest.raises(ValueError, match=expected):
        type(adapter).from_model(adapter.model, adapter.tokenizer, mask_token="<|nope|>", path="tiny/folder")


def test_unsupported_masked_lm_architecture_is_named(adapters):
    from transformers import AlbertConfig, AlbertForMaskedLM

    tokenizer = adapters["mlm"].tokenizer
    model = AlbertForMaskedLM(AlbertConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32,
                                           num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError) as error:
        MaskedLMBackbone.from_model(model, tokenizer, path="tiny/albert")
    message = str(error.value)
    assert "tiny/albert: masked-LM architecture AlbertForMaskedLM is not supported" in message
    assert "BertForMaskedLM" in message and "RobertaForMaskedLM" in message  # the supported ones are listed


# -- slot read-out -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("name", ONE_PASS)
def test_slot_states_are_read_at_the_slots(adapters, name, k):
    adapter = adapters[name]
    input_ids, attention_mask = make_batch(adapter, TEXTS, k)
    t = len(adapter.layout.tail_ids)
    length = input_ids.shape[1]
    start, end = length - k - t, length - t
    assert (input_ids[:, start:end] == adapter.layout.mask_id).all()  # the helper put the slots there

    hidden, logits = slot_states(adapter, input_ids, attention_mask, k)
    assert hidden.shape == (len(TEXTS), k, adapter.hidden_size)
    assert logits.shape == (len(TEXTS), k, adapter.vocab_size)
    full = full_hidden(adapter, input_ids, attention_mask)
    assert full.shape == (*input_ids.shape, adapter.hidden_size)
    torch.testing.assert_close(hidden, full[:, start:end], atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(logits, adapter.lm_head(full[:, start:end]), atol=1e-6, rtol=0)
    # Not the neighbouring positions: the slots differ from the tokens either side of them.
    assert not torch.allclose(hidden, full[:, start - 1:end - 1], atol=1e-4)
    assert not torch.allclose(hidden, full[:, start + 1:end + 1], atol=1e-4)


@pytest.mark.parametrize("name", ONE_PASS)
def test_lm_head_is_the_models_own_head(adapters, name):
    """Logits at the slots equal the full model's own output there (one text: no padding)."""
    adapter, k = adapters[name], 4
    input_ids, attention_mask = make_batch(adapter, TEXTS[:1], k)
    t = len(adapter.layout.tail_ids)
    _, logits = slot_states(adapter, input_ids, attention_mask, k)
    with torch.no_grad():
        reference = adapter.model(input_ids=input_ids, attention_mask=attention_mask).logits
    length = input_ids.shape[1]
    torch.testing.assert_close(logits, reference[:, length - k - t:length - t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ONE_PASS)
def test_content_logits_are_the_lm_head_read_at_those_ids(adapters, name):
    """The search-time read-out: the LM head at a few ids per text equals the full head's logits there."""
    adapter, k = adapters[name], 3
    input_ids, attention_mask = make_batch(adapter, TEXTS, k)
    hidden, logits = slot_states(adapter, input_ids, attention_mask, k)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, adapter.vocab_size, (len(TEXTS), 5), generator=generator)
    with torch.no_grad():
        restricted = adapter.content_logits(hidden, ids)
    expected = logits.gather(2, ids[:, None, :].expand(-1, k, -1))
    torch.testing.assert_close(restricted, expected, atol=1e-5, rtol=1e-5)


def _tiny_masked_lms():
    import transformers

    small = dict(vocab_size=97, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=64)
    yield transformers.BertForMaskedLM(transformers.BertConfig(**small))
    yield transformers.RobertaForMaskedLM(transformers.RobertaConfig(**small, pad_token_id=1))
    yield transformers.XLMRobertaForMaskedLM(transformers.XLMRobertaConfig(**small, pad_token_id=1))
    yield transformers.CamembertForMaskedLM(transformers.CamembertConfig(**small, pad_token_id=1))
    yield transformers.ElectraForMaskedLM(transformers.ElectraConfig(**small, embedding_size=16))
    yield transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
        vocab_size=97, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64))
    yield transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(
        vocab_size=97, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2))


def test_every_masked_lm_head_splits_into_transform_and_projection():
    """For each supported MLM architecture, ``projection(transform(h))`` is the model's own MLM output."""
    from pyserini_diffret.backbones.mlm import _HEADS

    torch.manual_seed(0)
    models = list(_tiny_masked_lms())
    assert {type(m).__name__ for m in models} == set(_HEADS)
    input_ids = torch.randint(3, 97, (2, 7))
    for model in models:
        transform, projection = _HEADS[type(model).__name__]
        model.eval()
        with torch.no_grad():
            hidden = model.base_model(input_ids=input_ids).last_hidden_state
            expected = model(input_ids=input_ids).logits
            torch.testing.assert_close(projection(model)(transform(model, hidden)), expected, atol=1e-5, rtol=1e-5,
                                       msg=lambda m, name=type(model).__name__: f"{name}: {m}")


@pytest.mark.parametrize("name", ONE_PASS)
def test_logit_shift_reads_logits_one_position_earlier(adapters, name):
    adapter, k = adapters[name], 4
    shifted = type(adapter).from_model(adapter.model, adapter.tokenizer, logit_shift=1)
    assert shifted.logit_shift == 1 and adapter.logit_shift == 0
    input_ids, attention_mask = make_batch(adapter, TEXTS, k)
    t = len(adapter.layout.tail_ids)
    start, end = input_ids.shape[1] - k - t, input_ids.shape[1] - t
    hidden, logits = slot_states(adapter, input_ids, attention_mask, k)
    shifted_hidden, shifted_logits = slot_states(shifted, input_ids, attention_mask, k)
    full = full_hidden(adapter, input_ids, attention_mask)
    torch.testing.assert_close(shifted_hidden, hidden, atol=1e-6, rtol=0)  # hidden states stay at the slots
    with torch.no_grad():
        torch.testing.assert_close(shifted_logits, adapter.lm_head(full[:, start - 1:end - 1]), atol=1e-6, rtol=0)
    assert not torch.allclose(shifted_logits, logits, atol=1e-4)


# -- attention and padding -----------------------------------------------------------------------

@pytest.mark.parametrize("position", [-1, -2])
@pytest.mark.parametrize("name", ONE_PASS)
def test_slots_see_tokens_after_them(adapters, name, position):
    """One-pass adapters attend both ways: a change in the tail, after the slots, moves every slot."""
    adapter, k = adapters[name], 4
    input_ids, attention_mask = make_batch(adapter, TEXTS[:1], k)
    changed = input_ids.clone()
    changed[0, position] = other_token(adapter, int(input_ids[0, position]))
    hidden, _ = slot_states(adapter, input_ids, attention_mask, k)
    moved, _ = slot_states(adapter, changed, attention_mask, k)
    per_slot = (moved - hidden).abs().amax(-1)[0]
    assert (per_slot > 1e-4).all(), per_slot


def test_autoregressive_first_representation_ignores_what_follows(adapters):
    """The AR baseline is causal: its first representation is the prompt's last state, whatever follows."""
    adapter = adapters["ar"]
    input_ids, attention_mask = make_batch(adapter, TEXTS, 0)
    hidden, logits = slot_states(adapter, input_ids, attention_mask, 1)
    assert hidden.shape == (len(TEXTS), 1, adapter.hidden_size)
    assert logits.shape == (len(TEXTS), 1, adapter.vocab_size)
    full = full_hidden(adapter, input_ids, attention_mask)
    torch.testing.assert_close(hidden[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)

    extra = torch.tensor(adapter.tokenizer.encode(' "fox lazy dog"', add_special_tokens=False)).expand(len(TEXTS), -1)
    longer = torch.cat([input_ids, extra], dim=1)
    longer_mask = torch.cat([attention_mask, torch.ones_like(extra)], dim=1)
    longer_full = full_hidden(adapter, longer, longer_mask)
    length = input_ids.shape[1]
    torch.testing.assert_close(longer_full[:, length - 1], hidden[:, 0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(longer_full[:, -1], hidden[:, 0], atol=1e-4)


def test_autoregressive_steps_decode_greedily(adapters):
    adapter = adapters["ar"]
    stepper = AutoregressiveBackbone.from_model(adapter.model, adapter.tokenizer)
    stepper.__dict__["_stop_ids"] = torch.tensor([-1])  # never stop: every step is a real one
    input_ids, attention_mask = make_batch(adapter, TEXTS, 0)
    hidden, logits = slot_states(stepper, input_ids, attention_mask, 3)
    assert hidden.shape == (len(TEXTS), 3, adapter.hidden_size)
    assert torch.isfinite(logits).all()
    ids, mask = input_ids, attention_mask
    for step in range(3):
        full = full_hidden(adapter, ids, mask)
        torch.testing.assert_close(hidden[:, step], full[:, -1], atol=1e-4, rtol=1e-4)
        with torch.no_grad():
            torch.testing.assert_close(logits[:, step], adapter.lm_head(full[:, -1]), atol=1e-4, rtol=1e-4)
        ids = torch.cat([ids, logits[:, step].argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)


def test_autoregressive_row_stops_at_a_stop_token(adapters):
    adapter, k = adapters["ar"], 3
    stepper = AutoregressiveBackbone.from_model(adapter.model, adapter.tokenizer)
    stepper.__dict__["_stop_ids"] = torch.tensor([-1])
    input_ids, attention_mask = make_batch(adapter, TEXTS, 0)
    _, free_logits = slot_states(stepper, input_ids, attention_mask, 1)
    first = free_logits[:, 0].argmax(-1)
    stepper.__dict__["_stop_ids"] = first[:1].clone()  # row 0's first token stops it
    stopped = first == first[0]
    hidden, logits = slot_states(stepper, input_ids, attention_mask, k)
    assert torch.isfinite(logits[:, 0]).all() and (hidden[:, 0].abs().amax(-1) > 0).all()
    assert (hidden[stopped, 1:] == 0).all()
    assert (logits[stopped, 1:] == float("-inf")).all()
    assert torch.isfinite(logits[~stopped]).all()
    assert (hidden[~stopped].abs().amax(-1) > 0).all()


def _assert_same_states(got, expected):
    hidden, logits = got
    torch.testing.assert_close(hidden, expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, expected[1], atol=1e-5, rtol=1e-5)  # -inf (stopped AR steps) must match too


@pytest.mark.parametrize("name", FAMILIES)
def test_alone_equals_left_padded_in_a_batch(adapters, name):
    adapter, k = adapters[name], 4
    input_ids, attention_mask = make_batch(adapter, TEXTS, k)
    assert attention_mask.sum(1).unique().numel() == 3  # three lengths: two rows padded, by different amounts
    batched = slot_states(adapter, input_ids, attention_mask, k)
    for i, text in enumerate(TEXTS):
        alone = slot_states(adapter, *make_batch(adapter, [text], k), k)
        _assert_same_states((batched[0][i:i + 1], batched[1][i:i + 1]), alone)


@pytest.mark.parametrize("name", FAMILIES)
def test_padding_ids_are_masked_out(adapters, name):
    adapter, k = adapters[name], 4
    input_ids, attention_mask = make_batch(adapter, TEXTS, k)
    repadded = input_ids.masked_fill(attention_mask == 0, other_token(adapter, adapter.layout.pad_id))
    assert not torch.equal(repadded, input_ids)
    _assert_same_states(slot_states(adapter, repadded, attention_mask, k),
                        slot_states(adapter, input_ids, attention_mask, k))


# -- sizes, precision, spec ----------------------------------------------------------------------

def test_masked_lm_reports_its_position_table(adapters):
    adapter = adapters["mlm"]
    table = adapter.model.bert.embeddings.position_embeddings.num_embeddings
    assert adapter.max_positions == table == 512


@pytest.mark.parametrize("name", DECODERS)
def test_decoders_have_no_position_limit(adapters, name):
    assert adapters[name].model.config.max_position_embeddings == 2048  # configured, but rotary: no table
    assert adapters[name].max_positions is None


@pytest.mark.parametrize("name", FAMILIES)
def test_sizes_and_precision(adapters, name):
    adapter = adapters[name]
    assert adapter.hidden_size == adapter.model.config.hidden_size == 32
    head_rows = adapter.model.get_output_embeddings().weight.shape[0]
    assert adapter.vocab_size == head_rows
    # The tiny decoders have a head wider than the tokenizer (as Dream's 152064 rows > its tokenizer).
    assert adapter.vocab_size == len(adapter.tokenizer) + (0 if name == "mlm" else 5)
    assert adapter.precision == "fp32"


@pytest.mark.parametrize(("dtype", "label"), [(torch.bfloat16, "bf16"), (torch.float16, "fp16")])
@pytest.mark.parametrize("name", ["mlm", "dream"])
def test_precision_follows_the_loaded_dtype(load_adapter, tiny_model_dirs, name, dtype, label):
    adapter = load_adapter(name, tiny_model_dirs[name], dtype=dtype)
    assert next(adapter.parameters()).dtype == dtype
    assert adapter.precision == label


@pytest.mark.parametrize("name", FAMILIES)
def test_spec(adapters, name):
    adapter = adapters[name]
    settings = RetrieverConfig.zero_shot(name)
    spec = adapter.spec(settings, "tiny/source")
    assert isinstance(spec, ModelSpec)
    assert spec.settings is settings
    assert spec.layout == adapter.layout
    assert (spec.hidden_size, spec.vocab_size, spec.max_positions, spec.precision) == (
        adapter.hidden_size, adapter.vocab_size, adapter.max_positions, adapter.precision)
    assert spec.max_positions == (512 if name == "mlm" else None)
    assert spec.runtime == "torch"
    assert spec.source == "tiny/source"
    assert spec.record is None


# -- the LM head in the module tree --------------------------------------------------------------

def _head_is_registered(adapter) -> bool:
    head = adapter._head if hasattr(adapter, "_head") else adapter.model.get_output_embeddings()
    registered = any(module is head for module in adapter.modules())
    parameters = {id(p) for p in adapter.parameters()}
    return registered and all(id(p) in parameters for p in head.parameters())


def _moves_with_the_adapter(adapter, reference):
    """After ``.to(float64)`` the whole read-out runs in float64 and agrees with the float32 one."""
    input_ids, attention_mask = make_batch(adapter, TEXTS, 4)
    adapter.to(torch.float64)
    hidden, logits = slot_states(adapter, input_ids, attention_mask, 4)
    assert hidden.dtype == logits.dtype == torch.float64
    expected = slot_states(reference, input_ids, attention_mask, 4)
    torch.testing.assert_close(hidden.float(), expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits.float(), expected[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["dream", "llada"])
def test_lm_head_is_registered_and_moves_with_the_adapter(adapters, load_adapter, tiny_model_dirs, name):
    """Stock Qwen2/Llama folders (the tiny ones): the head stays inside ``model``."""
    adapter = load_adapter(name, tiny_model_dirs[name])
    assert dict(adapter.named_modules())["model.lm_head"] is adapter.model.get_output_embeddings()
    assert _head_is_registered(adapter)
    _moves_with_the_adapter(adapter, adapters[name])


def _llada_typed(path, **config):
    """The tiny LLaDA folder loaded as a model whose config says ``model_type = "llada"``: the path a real
    LLaDA checkpoint takes in ``DecoderBackbone._prepare`` (head swapped for a pass-through)."""
    import transformers

    hf_config = transformers.AutoConfig.from_pretrained(str(path))
    hf_config.is_causal = False
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), config=hf_config, dtype=torch.float32)
    model.config.model_type = "llada"
    for key, value in config.items():
        setattr(model.config, key, value)
    return model, load_tokenizer(path)


def test_llada_typed_model_reads_the_same_states(adapters, tiny_model_dirs):
    adapter = LLaDABackbone.from_model(*_llada_typed(tiny_model_dirs["llada"]))
    assert adapter.body is adapter.model  # the whole model runs, its "logits" are the final hidden states
    assert adapter.vocab_size == adapters["llada"].vocab_size
    input_ids, attention_mask = make_batch(adapter, TEXTS, 4)
    _assert_same_states(slot_states(adapter, input_ids, attention_mask, 4),
                        slot_states(adapters["llada"], input_ids, attention_mask, 4))


def test_llada_typed_model_with_tied_embeddings_is_refused(tiny_model_dirs):
    with pytest.raises(NotImplementedError, match="tied input/output embeddings"):
        LLaDABackbone.from_model(*_llada_typed(tiny_model_dirs["llada"], weight_tying=True))


def test_llada_typed_head_is_registered_and_moves_with_the_adapter(adapters, tiny_model_dirs):
    adapter = LLaDABackbone.from_model(*_llada_typed(tiny_model_dirs["llada"]))
    assert callable(adapter.lm_head)
    assert _head_is_registered(adapter)
    _moves_with_the_adapter(adapter, adapters["llada"])
