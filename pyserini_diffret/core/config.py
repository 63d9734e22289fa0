"""Everything needed to encode with a model, stored as ``diffret_config.json`` in its folder.

A plain Hugging Face folder has no such file: its settings then come from the backbone's zero-shot
defaults (``RetrieverConfig.zero_shot``). Fine-tuned and exported folders carry one.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "diffret_config.json"
CONFIG_FORMAT = 2
# Format 1 named two settings differently; its folders still load (``renamed_settings``).
RENAMED_SETTINGS = {"max_passage_length": "max_document_length", "top_k": "terms_per_slot"}

SYSTEM_PROMPT = "You are an AI assistant that can understand human language."


@dataclass(frozen=True)
class PromptTexts:
    """The words around a text, one set per side ("query", "document") and variant ("one": K = 1, "few")."""

    system: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str


# The reference's prompt files (prompts/default/{query,passage}_prompt_{few,one,three}.yaml), as data.
_PAPER_WORDS = {
    "few": ("Use a few words to represent the {noun} in a retrieval task. Make sure your words are in lowercase.",
            'The words are: "'),
    "one": ("Use one word to represent the {noun} in a retrieval task. Make sure your word is in lowercase.",
            'The word is: "'),
    "three": ("Use three words to represent the {noun} in a retrieval task. Make sure your words are in lowercase "
              "and split them by space.", 'The words are: "'),
}
PROMPT_VARIANTS = tuple(_PAPER_WORDS)
_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def paper_prompt(noun: str, label: str, variant: str = "few") -> PromptTexts:
    """The paper's prompt for one side: ``Query: "..."`` / ``the query``, ``Passage: "..."`` / ``the passage``
    (the paper's words for a document)."""
    if variant not in _PAPER_WORDS:
        raise ValueError(f"prompt variant must be one of {', '.join(PROMPT_VARIANTS)}, got {variant!r}")
    instruction, assistant_prefix = _PAPER_WORDS[variant]
    return PromptTexts(system=SYSTEM_PROMPT, user_prefix=f'{label}: "',
                       user_suffix='". ' + instruction.format(noun=noun), assistant_prefix=assistant_prefix)


def paper_prompts(variant: str = "few") -> dict[str, dict[str, PromptTexts]]:
    """The paper's prompts for both sides, the same words at every K (the reference's launcher uses ``few``
    at every K; ``one`` and ``three`` have their number words rewritten for K, ``prompt_for_k``)."""
    sides = {"query": paper_prompt("query", "Query", variant), "document": paper_prompt("passage", "Passage", variant)}
    return {side: {"one": texts, "few": texts} for side, texts in sides.items()}


def prompt_for_k(texts: PromptTexts, k: int) -> PromptTexts:
    """The words adapted to K slots, as the reference adapts its prompt files: for K > 1 a number word before
    "word(s)" becomes K's ("one word" -> "four words"; digits past ten) and "word is" becomes "words are"."""
    if k <= 1:
        return texts
    count = _NUMBER_WORDS[k - 1] if k <= len(_NUMBER_WORDS) else str(k)
    number = re.compile(r"\b(?:" + "|".join(_NUMBER_WORDS) + r")\b\s+words?\b")

    def adapt(text: str) -> str:
        return re.sub(r"\bword is\b", "words are", number.sub(f"{count} words", text)) if text else text

    return PromptTexts(texts.system, adapt(texts.user_prefix), adapt(texts.user_suffix), adapt(texts.assistant_prefix))


def renamed_settings(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the settings' former names (format 1, ``max_passage_length``, ``top_k``) replaced."""
    return {RENAMED_SETTINGS.get(key, key): value for key, value in options.items()}


def compact_prompts() -> dict[str, dict[str, PromptTexts]]:
    """A short frame for small fine-tuned encoders: the same words for K = 1 and K > 1, so one model can be
    read with any K, and ~25 fewer tokens per text than the paper's chat prompt."""
    def side(label: str) -> dict[str, PromptTexts]:
        texts = PromptTexts(system="", user_prefix=f'{label}: "', user_suffix='"', assistant_prefix='keywords: "')
        return {"one": texts, "few": texts}

    return {"query": side("query"), "document": side("passage")}


PROMPT_SETS = {"paper": paper_prompts, "compact": compact_prompts}


def prompt_set(name_or_file: str) -> dict[str, dict[str, PromptTexts]]:
    """A named prompt set (``paper``, ``compact``) or one read from a JSON file (the ``prompts`` of a config)."""
    if name_or_file in PROMPT_SETS:
        return PROMPT_SETS[name_or_file]()
    path = Path(name_or_file)
    if not path.is_file():
        raise ValueError(f"prompts must be one of {', '.join(PROMPT_SETS)} or a JSON file, got {name_or_file!r}")
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        return {s: {v: PromptTexts(**t) for v, t in data[s].items()} for s in ("query", "document")}
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: prompts need 'query' and 'document', each with 'one' and 'few' "
                         f"(system, user_prefix, user_suffix, assistant_prefix): {error}") from None


@dataclass
class RetrieverConfig:
    backbone: str
    k_query: int = 4
    k_doc: int = 16
    max_query_length: int | None = 32  # text tokens, prompt excluded; None: what sequence_budget leaves
    max_document_length: int | None = 156
    # The reference's --max_length: prompt frame + text tokens per sequence (the K slots and the tail come on
    # top); the text keeps what the frame leaves. Used for a side whose max_*_length is None.
    sequence_budget: int | None = None
    terms_per_slot: int = 256  # term weights kept per slot
    scale: float = 100.0  # impact quantisation: w * scale, rounded or truncated (``quantisation``)
    quantisation: str = "round"  # "round" (the reference's fine-tuned encode) or "truncate" (its zero-shot read-out)
    split_special_tokens: bool = True  # special-token strings in user text stay plain text (False: the reference)
    stop_truncation: bool = False  # zero slots from the first one whose argmax is a special token
    logit_shift: int = 0  # 1: read a slot's logits one position earlier (Dream's own decoding convention)
    title_separator: str = ". "
    fine_tuned: bool = True
    prompts: dict[str, dict[str, PromptTexts]] = field(default_factory=paper_prompts)
    mask_token: str | None = None  # None: the tokenizer's own mask token
    source: str = ""
    # Filled in by exports: the graph needs no source model, so these are recorded.
    hidden_size: int | None = None
    vocab_size: int | None = None
    runtime: str = "torch"  # "torch": a Hugging Face folder; "onnx": an exported graph
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def zero_shot(cls, backbone: str, prompt_variant: str = "few", **overrides: Any) -> "RetrieverConfig":
        """Defaults for an off-the-shelf backbone: the reference's zero-shot set-up (its encode launcher's
        256-token budget, the ``few`` prompt at every K, top-128 terms per slot, truncated impacts, stop-token
        truncation for instruction models), with the paper's chosen K."""
        instruction = backbone in {"dream", "llada", "ar"}
        settings: dict[str, Any] = dict(
            backbone=backbone,
            k_query=4,
            k_doc=16 if backbone == "dream" else 4,
            max_query_length=None,
            max_document_length=None,
            sequence_budget=256,
            terms_per_slot=128,
            quantisation="truncate",
            stop_truncation=instruction,
            fine_tuned=False,
            prompts=paper_prompts(prompt_variant),
        )
        settings.update(overrides)
        return cls(**settings)

    def slots(self, side: str) -> int:
        """K for ``side``: ``k_query`` for queries, ``k_doc`` for documents."""
        return self.k_query if side == "query" else self.k_doc

    def prompt(self, side: str, k: int) -> PromptTexts:
        """The words around a ``side`` text with ``k`` slots (number words adapted to K)."""
        return prompt_for_k(self.prompts[side]["one" if k == 1 else "few"], k)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["format"] = CONFIG_FORMAT
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "config") -> "RetrieverConfig":
        data = dict(data)
        version = data.pop("format", None)
        if version == 1:
            data = renamed_settings(data)
            if isinstance(data.get("prompts"), dict) and "passage" in data["prompts"]:
                data["prompts"] = {("document" if side == "passage" else side): v for side, v in data["prompts"].items()}
        elif version != CONFIG_FORMAT:
            raise ValueError(f"{origin}: config format {version!r} is not supported (expected {CONFIG_FORMAT})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{origin}: unknown config keys {unknown}")
        if "prompts" in data:
            data["prompts"] = {
                side: {variant: PromptTexts(**texts) for variant, texts in variants.items()}
                for side, variants in data["prompts"].items()
            }
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "RetrieverConfig":
        path = Path(folder) / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return cls.from_dict(data, origin=str(path))

    def validate(self) -> None:
        for name in ("k_query", "k_doc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_query_length", "max_document_length", "sequence_budget", "terms_per_slot"):
            value = getattr(self, name)
            optional = name != "terms_per_slot"
            if not (optional and value is None) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1{' or None' if optional else ''}, got {value!r}")
        for name in ("max_query_length", "max_document_length"):
            if getattr(self, name) is None and self.sequence_budget is None:
                raise ValueError(f"{name} is None and there is no sequence_budget: the text length is undefined")
        if self.quantisation not in ("round", "truncate"):
            raise ValueError(f"quantisation must be 'round' or 'truncate', got {self.quantisation!r}")
        if self.logit_shift not in (0, 1):
            raise ValueError(f"logit_shift must be 0 or 1, got {self.logit_shift!r}")
