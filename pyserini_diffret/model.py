"""The engine: ``load_model`` and ``DiffRetriever``, text in, DiffRetriever representations out, whatever
the backbone or runtime.

The flow: a model folder -> ``ModelSpec`` (settings, slot layout, limits; from the backbone adapter or
the export record) -> a runtime (torch or onnxruntime) -> ``DiffRetriever``: texts -> ``PromptBuilder``
(prompt, K mask slots, left padding) -> ``runtime.run`` (one backbone pass, read-out at the slots) ->
shared post-processing (single vector, integer impacts). Only ``load_model`` builds a ``DiffRetriever``;
every limit (K, text lengths, position table, device) is checked here before a runtime is called.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import numbers
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig, renamed_settings
from pyserini_diffret.core.content import ContentFilter
from pyserini_diffret.core.devices import parse_device
from pyserini_diffret.core.prompts import SIDES, EncodedBatch, PromptBuilder, SlotLayout
from pyserini_diffret.core.record import ModelFolderError
from pyserini_diffret.core.representations import Representations, pool_content_scores, quantise, single_vectors
from pyserini_diffret.core.spec import RUNTIMES, ModelSpec
from pyserini_diffret.core.text import join_title
from pyserini_diffret.parallel import encode_batches
from pyserini_diffret.registry import resolve_model

# ``load_model`` options that are settings (``RetrieverConfig`` fields a caller may set).
CONFIG_OPTIONS = frozenset(f.name for f in dataclasses.fields(RetrieverConfig)) - {"backbone", "prompts", "extra", "runtime"}


class Runtime(Protocol):
    name: str

    def run(self, batch: EncodedBatch, content_ids: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        ...


class DiffRetriever:
    """Encodes queries and documents into slot vectors, single vectors and impact vectors."""

    def __init__(self, spec: ModelSpec, tokenizer, runtime: Runtime, batch_size: int = 32) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.batch_size = batch_size
        self.prompts = PromptBuilder(tokenizer, spec.settings, spec.layout)
        spec.check(self.prompts)
        excluded = [spec.layout.mask_id] if spec.layout.mask_id is not None else []
        self.content = ContentFilter(tokenizer, spec.vocab_size, excluded_ids=excluded)
        tokens = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), spec.vocab_size))))
        self.vocabulary = np.array(tokens + [""] * (spec.vocab_size - len(tokens)), dtype=object)
        # Set by ``load_model``: its arguments and the settings they gave, so that another process can load
        # the same model again (``load_recipe``); None for a model built by hand.
        self.load_arguments: dict[str, Any] | None = None
        self._loaded_config: RetrieverConfig | None = None

    # -- what the model is ---------------------------------------------------------------------------
    @property
    def config(self) -> RetrieverConfig:
        return self.spec.settings

    @property
    def layout(self) -> SlotLayout:
        return self.spec.layout

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    @property
    def source(self) -> str:
        return self.spec.source

    @property
    def k_query(self) -> int:
        return self.config.k_query

    @property
    def k_doc(self) -> int:
        return self.config.k_doc

    def set_lengths(self, query: int | None = None, document: int | None = None) -> None:
        """Text tokens kept per query / document from now on; a clear error (and no change) when the model
        cannot take them."""
        wanted = {name: value for name, value in (("max_query_length", query), ("max_document_length", document))
                  if value is not None}
        for name, value in wanted.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        previous = {name: getattr(self.config, name) for name in wanted}
        for name, value in wanted.items():
            setattr(self.config, name, value)
        try:
            self.spec.check(self.prompts)
        except ValueError:
            for name, value in previous.items():
                setattr(self.config, name, value)
            raise

    def load_recipe(self) -> tuple[Callable[..., "DiffRetriever"], dict[str, Any]]:
        """How another process loads this same model: ``load_model`` and its keyword arguments, with the
        settings changed since loading (``set_lengths``, or on ``config``) as options."""
        if self.load_arguments is None or self._loaded_config is None:
            raise ValueError("this model was not made by load_model, so another process cannot load it again")
        arguments = dict(self.load_arguments)
        for name in sorted(CONFIG_OPTIONS):
            value = getattr(self.config, name)
            if value != getattr(self._loaded_config, name):
                if value is None:  # load_model reads None as "not given"
                    raise ValueError(f"setting {name} was changed to None after loading; "
                                     "another process cannot load the model that way")
                arguments[name] = value
        return load_model, arguments

    # -- encoding ------------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> Representations:
        return self.encode(texts, side="query", batch_size=batch_size)

    def encode_documents(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                         batch_size: int | None = None) -> Representations:
        return self.encode(self.document_texts(texts, titles), side="document", batch_size=batch_size)

    def document_texts(self, texts: Sequence[str], titles: Sequence[str | None] | None = None) -> list[str]:
        """The text encoded for each document (``core.text.join_title``)."""
        texts = _check_texts(texts, "texts")
        if titles is None:
            return texts
        titles = list(titles)
        if len(titles) != len(texts):
            raise ValueError(f"got {len(titles)} titles for {len(texts)} texts")
        return [join_title(title, text, self.config.title_separator) for title, text in zip(titles, texts)]

    def encode(self, texts: Sequence[str], side: str, batch_size: int | None = None) -> Representations:
        """Encode ``texts`` as queries or documents (``side``), in length-sorted batches."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        texts = _check_texts(texts, "texts")
        k = self.config.slots(side)
        if not texts:
            return Representations.empty(k, self.hidden_size, self.vocabulary)
        size = _batch_size(batch_size or self.batch_size)
        # Settings may have been changed on ``config`` directly: check them again (cheap) before any run.
        self.spec.check(self.prompts)
        order, batches = length_batches(texts, size)
        parts = [self._encode_batch([texts[i] for i in batch], side, k) for batch in batches]
        return Representations.concat(parts).take(np.argsort(order, kind="stable"))

    # -- streaming -----------------------------------------------------------------------------------
    def embed_queries(self, texts: Iterable[str], batch_size: int | None = None,
                      parallel: int | None = None) -> Iterator[Representations]:
        """Encode a stream of queries lazily: one ``Representations`` per ``batch_size`` texts, in input
        order (see ``embed_documents``)."""
        size = _batch_size(self.batch_size if batch_size is None else batch_size)
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not a single string")
        checked = (_check_text(text, f"texts[{i}]") for i, text in enumerate(texts))
        return encode_batches(self, _batched(checked, size), "query", workers=parallel)

    def embed_documents(self, texts: Iterable[str | tuple[str, str | None]], batch_size: int | None = None,
                        parallel: int | None = None) -> Iterator[Representations]:
        """Encode a stream of documents lazily: one ``Representations`` per ``batch_size`` documents.

        Items are texts or ``(text, title)`` pairs (title joined as ``encode_documents`` joins it; None: no
        title). The iterable is read as batches are needed, a few batches ahead at most; each batch gives
        the same result as ``encode_documents`` of that batch alone. ``parallel=N`` (N > 1) encodes in N
        worker processes (CPU only), each loading this model again with its share of the cores.
        """
        size = _batch_size(self.batch_size if batch_size is None else batch_size)
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of documents, not a single string")
        joined = (self._document_text(item, i) for i, item in enumerate(texts))
        return encode_batches(self, _batched(joined, size), "document", workers=parallel)

    def _document_text(self, item: str | tuple[str, str | None], index: int) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, tuple) and len(item) == 2:
            text, title = item
            _check_text(text, f"texts[{index}][0] (the text)")
            if title is not None:
                _check_text(title, f"texts[{index}][1] (the title)")
            return join_title(title, text, self.config.title_separator)
        raise TypeError(f"texts[{index}] is {type(item).__name__}, not a text or a (text, title) pair")

    def _encode_batch(self, texts: list[str], side: str, k: int) -> Representations:
        batch = self.prompts.build(texts, side, k)
        content_ids = self.content.ids(texts)
        vectors, scores = self.runtime.run(batch, content_ids, self.config.stop_truncation)
        weights = pool_content_scores(scores, self.config.terms_per_slot)
        ids, impacts = quantise(weights, content_ids, self.config.scale, self.config.quantisation)
        return Representations(single_vectors(vectors), vectors, ids, impacts, self.vocabulary)


def length_batches(texts: Sequence[str], size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The batches ``encode`` runs for ``texts``: the length-sorted order and its slices of ``size``.

    Sorting by length keeps padding (and so wasted compute) low. Results do not depend on it, except
    with int8 dynamic quantisation, whose scales depend on the batch: whoever must reproduce ``encode``
    byte for byte (the corpus encoder's worker processes) batches with this.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    return order, [order[s:s + size] for s in range(0, len(texts), size)]


def _batch_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    return int(size)


def _batched(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} is {type(text).__name__}, not str")
    return text


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        _check_text(text, f"{what}[{i}]")
    return texts


# -- loading -------------------------------------------------------------------------------------------------
def load_model(name_or_path: str | Path, *, backbone: str | None = None, k_query: int | None = None,
               k_doc: int | None = None, runtime: str | None = None, device: str = "cpu",
               **options: Any) -> DiffRetriever:
    """Load a DiffRetriever model.

    ``name_or_path``: a Hugging Face model folder, an exported (ONNX) model folder, or a registered short
    name (``"diffret"``, the embedded default). Options: any ``RetrieverConfig`` setting (``terms_per_slot``,
    ``max_query_length``, ``max_document_length``, ``stop_truncation``, ``logit_shift``...), plus ``dtype``,
    ``trust_remote_code``, ``batch_size``, and for ONNX ``providers``/``threads``/``pad_multiple``/``io_binding``.
    """
    path = resolve_model(name_or_path)
    options = renamed_settings(options)
    loader_options = {key: options.pop(key) for key in list(options) if key not in CONFIG_OPTIONS}
    settings = read_settings(path, backbone)
    overrides = {key: value for key, value in dict(options, k_query=k_query, k_doc=k_doc).items() if value is not None}
    settings = dataclasses.replace(settings, **overrides)
    settings.validate()
    chosen = runtime or settings.runtime
    if chosen not in RUNTIMES:
        raise ValueError(f"unknown runtime {chosen!r}; choose one of {RUNTIMES}")
    parse_device(device)  # a clear error for a malformed name, whatever the runtime
    if chosen == "onnx":
        model = _load_onnx(path, settings, device=device, **loader_options)
    elif settings.runtime == "onnx":
        raise ValueError(f"{path}: an exported ONNX model folder has no torch weights; use runtime='onnx'")
    else:
        model = _load_torch(path, settings, device=device, **loader_options)
    model.load_arguments = dict(options, **loader_options, name_or_path=str(path), backbone=backbone,
                                k_query=k_query, k_doc=k_doc, runtime=runtime, device=device)
    model._loaded_config = copy.deepcopy(model.config)
    return model


def read_settings(path: Path, backbone: str | None = None) -> RetrieverConfig:
    """A folder's settings: its ``diffret_config.json``, or the backbone's zero-shot defaults."""
    from pyserini_diffret.backbones import backbone_class, detect_backbone  # noqa: PLC0415

    if (path / CONFIG_NAME).is_file():
        settings = RetrieverConfig.load(path)
        if backbone is not None and backbone != settings.backbone:
            raise ValueError(f"{path}: the model is a {settings.backbone!r} model; backbone={backbone!r} contradicts it")
        return settings
    if any(path.glob("*.onnx")) and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: incomplete exported ONNX model folder: {CONFIG_NAME} is missing; export it again")
    name = backbone or detect_backbone(path)
    backbone_class(name)  # clear error for unknown names
    return RetrieverConfig.zero_shot(name, source=str(path))


def load_backbone(path: Path, settings: RetrieverConfig, *, dtype: Any = None, trust_remote_code: bool = False):
    """The backbone adapter of a Hugging Face folder, loaded with torch (``dtype``: a torch dtype or its name)."""
    import torch  # noqa: PLC0415

    from pyserini_diffret.backbones import backbone_class  # noqa: PLC0415

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
    return backbone_class(settings.backbone).load(
        path, mask_token=settings.mask_token, dtype=torch_dtype, trust_remote_code=trust_remote_code,
        logit_shift=settings.logit_shift,
    )


def _load_torch(path: Path, settings: RetrieverConfig, *, device: str = "cpu", dtype: str | None = None,
                trust_remote_code: bool = False, batch_size: int = 32) -> DiffRetriever:
    from pyserini_diffret.runtimes.torch_runtime import TorchRuntime  # noqa: PLC0415

    device = TorchRuntime.check_device(device)
    adapter = load_backbone(path, settings, dtype=dtype or ("bfloat16" if device.startswith("cuda") else "float32"),
                            trust_remote_code=trust_remote_code)
    spec = adapter.spec(settings, str(path))
    spec.check(PromptBuilder(adapter.tokenizer, settings, adapter.layout))  # before moving weights to a device
    return DiffRetriever(spec, adapter.tokenizer, TorchRuntime(adapter, settings.stop_truncation, device=device),
                         batch_size=batch_size)


def _load_onnx(path: Path, settings: RetrieverConfig, *, device: str = "cpu", batch_size: int = 32,
               trust_remote_code: bool = False, **session_options: Any) -> DiffRetriever:
    from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415
    from pyserini_diffret.runtimes.onnx_runtime import OnnxRuntime  # noqa: PLC0415

    device = OnnxRuntime.check_device(device)
    spec = ModelSpec.from_export(path, settings)
    if device == "cpu" and spec.precision == "fp16" and session_options.get("providers") is None:
        warnings.warn(f"{path}: an fp16 export runs slowly on CPU (export fp32 or int8 for CPU)", stacklevel=3)
    if device != "cpu" and spec.precision == "int8":
        warnings.warn(f"{path}: an int8 (dynamic quantisation) export is meant for CPU; on CUDA use fp16", stacklevel=3)
    try:
        # The folder's own tokenizer code runs only if the caller asked for it (never a prompt).
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code is True)
    except FileNotFoundError as error:
        raise ModelFolderError(f"incomplete export: {error}") from None
    _check_tokenizer(path, tokenizer, spec)
    spec.check(PromptBuilder(tokenizer, settings, spec.layout))  # before a session is opened
    runtime = OnnxRuntime.open(path / spec.record.graph, spec, device=device, **session_options)
    return DiffRetriever(spec, tokenizer, runtime, batch_size=batch_size)


def _check_tokenizer(path: Path, tokenizer, spec: ModelSpec) -> None:
    layout = spec.layout
    if spec.settings.mask_token is not None:
        ids = tokenizer.convert_tokens_to_ids([spec.settings.mask_token])
        if not ids or ids[0] != layout.mask_id:
            raise ValueError(
                f"{path}: mask token {spec.settings.mask_token!r} is id {ids[0] if ids else None} in the tokenizer, "
                f"but the graph was exported with mask id {layout.mask_id}; the tokenizer files do not belong to this graph"
            )
    largest = max([layout.mask_id, layout.pad_id, *layout.tail_ids, *layout.start_ids])
    if largest >= spec.vocab_size:
        raise ModelFolderError(f"{path}: token id {largest} of the slot layout is outside the vocabulary ({spec.vocab_size})")
