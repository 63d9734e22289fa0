"""Small random models of each backbone family, built in the tests (no downloads).

- ``mlm``: a 2-layer BERT masked LM with a WordPiece tokenizer built here.
- ``dream``: a Qwen2-shaped decoder run bidirectionally, byte-level BPE tokenizer with Qwen's chat
  markup and Dream's real mask token ``<|mask|>``.
- ``llada``: a Llama-shaped decoder run bidirectionally, Llama-3 chat markup and ``<|mdm_mask|>``.
- ``ar``: a causal Qwen2-shaped decoder (the PromptReps baseline).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "Vitamin D deficiency is associated with bone fractures and weak muscles.",
    "Airflow over a swept wing changes the boundary layer transition point.",
    "A query asks for documents; a passage answers it in a retrieval task.",
    "Running, jumping and swimming are exercises that improve cardiovascular health.",
    "Protein folding determines the function of enzymes inside the cell.",
    "Supersonic flow produces shock waves that heat the surface of the aircraft.",
    "Use a few words to represent the query. Make sure your words are in lowercase.",
    "You are an AI assistant that can understand human language. The words are:",
    'Query: "what reduces fractures?". The word is: "bone" and the passage is "vitamin".',
] * 3

QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_TEMPLATE = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _bpe_tokenizer(specials: list[str], vocab_size: int = 600):
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def _wordpiece_tokenizer():
    from transformers import BertTokenizerFast

    # The vocabulary is listed, not trained: tokenizers' WordPieceTrainer gives a different vocabulary from
    # run to run (hash-map order, huggingface/tokenizers#1794), which made results vary between processes.
    # CORPUS words are whole tokens; other words split into a few suffixes and characters.
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {word for text in CORPUS for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    characters = sorted({c for word in words for c in word} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters),
             "##ing", "##s", "##ed", "##er", *sorted(w for w in words if len(w) > 1)]
    tok = Tokenizer(models.WordPiece({token: i for i, token in enumerate(dict.fromkeys(vocab))}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]")


def make_mlm(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2, vocab_size: int | None = None) -> Path:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = _wordpiece_tokenizer()
    config = BertConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512)
    BertForMaskedLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _decoder(folder: Path, family: str, tokenizer, seed: int, hidden: int = 32, layers: int = 2,
             vocab_size: int | None = None) -> Path:
    """A random decoder; ``vocab_size`` may exceed the tokenizer's (as Dream's 152064 > its tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if family == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(vocab_size=vocab_size or len(tokenizer) + 5, hidden_size=hidden, intermediate_size=2 * hidden,
                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=2048,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        tie_word_embeddings=False)
    model_cls(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_dream(folder: Path, seed: int = 1, **size) -> Path:
    tokenizer = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"])
    tokenizer.eos_token, tokenizer.pad_token = "<|endoftext|>", "<|endoftext|>"
    tokenizer.chat_template = QWEN_TEMPLATE
    return _decoder(folder, "qwen2", tokenizer, seed, **size)


def make_llada(folder: Path, seed: int = 2, **size) -> Path:
    tokenizer = _bpe_tokenizer(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                "<|eot_id|>", "<|mdm_mask|>"])
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|begin_of_text|>", "<|end_of_text|>", "<|end_of_text|>"
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return _decoder(folder, "llama", tokenizer, seed, **size)


def make_ar(folder: Path, seed: int = 3, **size) -> Path:
    tokenizer = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer.eos_token, tokenizer.pad_token = "<|endoftext|>", "<|endoftext|>"
    tokenizer.chat_template = QWEN_TEMPLATE
    return _decoder(folder, "qwen2", tokenizer, seed, **size)


BUILDERS = {"mlm": make_mlm, "dream": make_dream, "llada": make_llada, "ar": make_ar}
