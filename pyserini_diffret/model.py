"""``load_model``: text in, DiffRetriever representations out, whatever the backbone or runtime.

The flow: texts -> ``PromptBuilder`` (prompt, K mask slots, left padding) -> runtime (one backbone pass,
read-out at the slots) -> shared post-processing (single vector, integer impact weights).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.core.content import ContentFilter
from pyserini_diffret.core.prompts import EncodedBatch, PromptBuilder, SlotLayout
from pyserini_diffret.core.representations import Representations, quantise, single_vectors
from pyserini_diffret.registry import resolve_model

RUNTIMES = ("torch", "onnx")


class Runtime(Protocol):
    name: str

    def run(self, batch: EncodedBatch, content_mask: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        ...


class DiffRetriever:
    """Encodes queries and documents into slot vectors, single vectors and impact weights."""

    def __init__(self, config: RetrieverConfig, tokenizer, layout: SlotLayout, runtime: Runtime,
                 hidden_size: int, vocab_size: int, batch_size: int = 32, source: str = "") -> None:
        config.validate()
        self.config = config
        self.tokenizer = tokenizer
        self.layout = layout
        self.runtime = runtime
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.batch_size = batch_size
        self.source = source
        self.prompts = PromptBuilder(tokenizer, config, layout)
        excluded = [layout.mask_id] if layout.mask_id is not None else []
        self.content = ContentFilter(tokenizer, vocab_size, excluded_ids=excluded)
        tokens = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
        self.tokens = np.array(tokens + [""] * (vocab_size - len(tokens)), dtype=object)

    # -- public API -----------------------------------------------------------------------------
    @property
    def k_query(self) -> int:
        return self.config.k_query

    @property
    def k_doc(self) -> int:
        return self.config.k_doc

    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> Representations:
        return self.encode(texts, side="query", batch_size=batch_size)

    def encode_documents(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                         batch_size: int | None = None) -> Representations:
        return self.encode(self.document_texts(texts, titles), side="passage", batch_size=batch_size)

    def document_texts(self, texts: Sequence[str], titles: Sequence[str | None] | None = None) -> list[str]:
        """``title + ". " + text`` as the reference encoder builds documents; the text alone without a title."""
        texts = _check_texts(texts, "texts")
        if titles is None:
            return texts
        titles = list(titles)
        if len(titles) != len(texts):
            raise ValueError(f"got {len(titles)} titles for {len(texts)} texts")
        sep = self.config.title_separator
        return [f"{title}{sep}{text}" if title else text for title, text in zip(titles, texts)]

    def encode(self, texts: Sequence[str], side: str, batch_size: int | None = None) -> Representations:
        """Encode ``texts`` as queries or passages (``side``), in length-sorted batches."""
        texts = _check_texts(texts, "texts")
        k = self.k_query if side == "query" else self.k_doc
        if not texts:
            return Representations.empty(k, self.hidden_size)
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        # Sorting by length keeps padding (and so wasted compute) low; results do not depend on it.
        order = np.argsort([len(t) for t in texts], kind="stable")
        parts = [self._encode_batch([texts[i] for i in order[s:s + size]], side, k) for s in range(0, len(texts), size)]
        return Representations.concat(parts).take(np.argsort(order, kind="stable"))

    def _encode_batch(self, texts: list[str], side: str, k: int) -> Representations:
        batch = self.prompts.build(texts, side, k)
        vectors, weights = self.runtime.run(batch, self.content.mask(texts), self.config.stop_truncation)
        return Representations(single_vectors(vectors), vectors, quantise(weights, self.config.scale, self.tokens))


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__}, not str")
    return texts


_CONFIG_OPTIONS = {f.name for f in dataclasses.fields(RetrieverConfig)} - {"backbone", "prompts", "extra", "runtime"}


def load_model(name_or_path: str | Path, *, backbone: str | None = None, k_query: int | None = None,
               k_doc: int | None = None, runtime: str | None = None, device: str = "cpu",
               **options: Any) -> DiffRetriever:
    """Load a DiffRetriever model.

    ``name_or_path``: a Hugging Face model folder, an exported (ONNX) model folder, or a registered short
    name (``"diffret"``, the embedded default). Options: any ``RetrieverConfig`` field (``top_k``,
    ``max_query_length``, ``max_passage_length``, ``stop_truncation``, ``logit_shift``...), plus ``dtype``,
    ``trust_remote_code``, ``batch_size``, and for ONNX ``providers``/``threads``.
    """
    path = resolve_model(name_or_path)
    loader_options = {key: options.pop(key) for key in list(options) if key not in _CONFIG_OPTIONS}
    config = _config_for(path, backbone)
    overrides = {key: value for key, value in dict(options, k_query=k_query, k_doc=k_doc).items() if value is not None}
    config = dataclasses.replace(config, **overrides)
    config.validate()
    chosen = runtime or config.runtime
    if chosen not in RUNTIMES:
        raise ValueError(f"unknown runtime {chosen!r}; choose one of {RUNTIMES}")
    if chosen == "onnx":
        from pyserini_diffret.runtimes.onnx_runtime import load_onnx_model  # noqa: PLC0415

        return load_onnx_model(path, config, device=device, **loader_options)
    if config.runtime == "onnx":
        raise ValueError(f"{path}: an exported ONNX model folder has no torch weights; use runtime='onnx'")
    return _load_torch_model(path, config, device=device, **loader_options)


def _config_for(path: Path, backbone: str | None) -> RetrieverConfig:
    from pyserini_diffret.backbones import backbone_class, detect_backbone  # noqa: PLC0415

    if (path / CONFIG_NAME).is_file():
        config = RetrieverConfig.load(path)
        if backbone is not None and backbone != config.backbone:
            raise ValueError(f"{path}: the model is a {config.backbone!r} model; backbone={backbone!r} contradicts it")
        return config
    if any(path.glob("*.onnx")) and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: incomplete exported ONNX model folder: {CONFIG_NAME} is missing; export it again")
    name = backbone or detect_backbone(path)
    backbone_class(name)  # clear error for unknown names
    return RetrieverConfig.zero_shot(name, source=str(path))


def _load_torch_model(path: Path, config: RetrieverConfig, *, device: str = "cpu", dtype: str | None = None,
                      trust_remote_code: bool = False, batch_size: int = 32) -> DiffRetriever:
    import torch  # noqa: PLC0415

    from pyserini_diffret.backbones import backbone_class  # noqa: PLC0415
    from pyserini_diffret.runtimes.torch_runtime import TorchRuntime  # noqa: PLC0415

    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    adapter = backbone_class(config.backbone).load(
        path, mask_token=config.mask_token, dtype=torch_dtype, trust_remote_code=trust_remote_code,
        logit_shift=config.logit_shift,
    )
    check_lengths(adapter, config, PromptBuilder(adapter.tokenizer, config, adapter.layout), path)
    runtime = TorchRuntime(adapter, top_k=config.top_k, tail_length=len(adapter.layout.tail_ids), device=device)
    return DiffRetriever(config, adapter.tokenizer, adapter.layout, runtime, adapter.hidden_size,
                         adapter.vocab_size, batch_size=batch_size, source=str(path))


def check_lengths(adapter, config: RetrieverConfig, prompts: PromptBuilder, path: Path) -> None:
    """Fail early when the longest prompt would not fit the model's position table."""
    limit = adapter.max_positions
    if not limit or adapter.name != "mlm":  # rotary decoders have no hard table limit
        return
    for side, k in (("query", config.k_query), ("passage", config.k_doc)):
        needed = prompts.sequence_length_bound(side, k)
        if needed > limit:
            raise ValueError(
                f"{path}: a {side} can take {needed} tokens (prompt, {prompts.max_text_length(side)} text tokens, "
                f"K={k} slots, tail) but the model has {limit} positions; lower max_{side}_length or K"
            )
