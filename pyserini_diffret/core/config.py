"""Everything needed to encode with a model, stored as ``diffret_config.json`` in its folder.

A plain Hugging Face folder has no such file: its settings then come from the backbone's zero-shot
defaults (``RetrieverConfig.zero_shot``). Fine-tuned and exported folders carry one.
"""
from __future__ import annotations

import dataclasses
import json
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


def paper_prompts(noun: str, label: str) -> dict[str, PromptTexts]:
    """The paper's prompts for one side, ``one`` (K = 1) and ``few`` (K > 1): ``Query: "..."`` / ``the query``,
    ``Passage: "..."`` / ``the passage`` (the paper's words for a document)."""
    return {
        "one": PromptTexts(
            system=SYSTEM_PROMPT,
            user_prefix=f'{label}: "',
            user_suffix=f'". Use one word to represent the {noun} in a retrieval task. '
            "Make sure your word is in lowercase.",
            assistant_prefix='The word is: "',
        ),
        "few": PromptTexts(
            system=SYSTEM_PROMPT,
            user_prefix=f'{label}: "',
            user_suffix=f'". Use a few words to represent the {noun} in a retrieval task. '
            "Make sure your words are in lowercase.",
            assistant_prefix='The words are: "',
        ),
    }


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


def _default_prompts() -> dict[str, dict[str, PromptTexts]]:
    return {"query": paper_prompts("query", "Query"), "document": paper_prompts("passage", "Passage")}


PROMPT_SETS = {"paper": _default_prompts, "compact": compact_prompts}


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
    max_query_length: int = 32  # text tokens, prompt excluded
    max_document_length: int = 156
    terms_per_slot: int = 256  # term weights kept per slot
    scale: float = 100.0  # impact quantisation: round(w * scale)
    stop_truncation: bool = False  # zero slots from the first one whose argmax is a special token
    logit_shift: int = 0  # 1: read a slot's logits one position earlier (Dream's own decoding convention)
    title_separator: str = ". "
    fine_tuned: bool = True
    prompts: dict[str, dict[str, PromptTexts]] = field(default_factory=_default_prompts)
    mask_token: str | None = None  # None: the tokenizer's own mask token
    source: str = ""
    # Filled in by exports: the graph needs no source model, so these are recorded.
    hidden_size: int | None = None
    vocab_size: int | None = None
    runtime: str = "torch"  # "torch": a Hugging Face folder; "onnx": an exported graph
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def zero_shot(cls, backbone: str, **overrides: Any) -> "RetrieverConfig":
        """Defaults for an off-the-shelf backbone (the paper's zero-shot set-up)."""
        instruction = backbone in {"dream", "llada", "ar"}
        settings: dict[str, Any] = dict(
            backbone=backbone,
            k_query=4,
            k_doc=16 if backbone == "dream" else 4,
            terms_per_slot=128,
            stop_truncation=instruction,
            fine_tuned=False,
        )
        settings.update(overrides)
        return cls(**settings)

    def slots(self, side: str) -> int:
        """K for ``side``: ``k_query`` for queries, ``k_doc`` for documents."""
        return self.k_query if side == "query" else self.k_doc

    def prompt(self, side: str, k: int) -> PromptTexts:
        return self.prompts[side]["one" if k == 1 else "few"]

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
        for name in ("max_query_length", "max_document_length", "terms_per_slot"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.logit_shift not in (0, 1):
            raise ValueError(f"logit_shift must be 0 or 1, got {self.logit_shift!r}")
