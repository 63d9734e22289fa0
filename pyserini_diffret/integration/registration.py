"""Register the ``diffret`` encoders in Pyserini's own commands and classes.

Pyserini 2.4 has no plugin mechanism. Everything below runs only when the Pyserini module concerned is
imported (``module_hooks``), never at interpreter start, and leaves every other encoder's behaviour as
it was. A model is ours only when the user says so (``is_ours``): ``--encoder diffret`` (a registered
name, exactly), ``--encoder-class diffret``, or a model folder that holds a ``diffret_config.json``.
Nothing is decided by a substring of a name or path; every other name resolves exactly as in Pyserini.

- ``pyserini.encode``: ``"diffret"`` becomes the *last* key of ``document_encoder_class_map`` and
  ``query_encoder_class_map``. Pyserini's commands pick the first key that is a substring of the
  lower-cased ``--encoder``; ours, last, is only reached when none of Pyserini's keys matches, and
  ``class_hint`` (below) answers that case with Pyserini's own fallback, ``auto``. The values are small
  factories that import our classes when called.
- ``pyserini.encode.__main__`` and ``pyserini.search.faiss.__main__`` (source rewrites, line numbers
  kept; the hybrid command uses the latter's ``init_query_encoder``): ``diffret`` joins the hard-coded
  ``--encoder-class`` choices; ``class_hint`` gives the class to use before Pyserini reads it: ``diffret``
  for our models, ``None`` (Pyserini's own key loop decides) when one of Pyserini's keys matches, ``auto``
  when none does; right after ``init_encoder`` the encode command configures our encoder from its
  arguments: dense vectors with ``--to-faiss``, impact vectors otherwise; FAISS ``--dimension`` from the
  model unless given; ``--max-length`` only when given (else the model's configured passage length);
  ``--batch-size`` as the model's batch.
- ``pyserini.search.lucene._impact_searcher``: ``LuceneImpactSearcher("...", "diffret")`` (and
  ``--impact --encoder diffret``) builds our impact query encoder; any other string goes to Pyserini's
  own ``_init_query_encoder_from_str``. Its ``min_idf`` default keeps query
  terms that occur in every document (``-1``) for our encoder; an explicit ``--min-idf``/``min_idf=``
  is honoured. Other encoders keep Pyserini's default ``0`` (the ``--min-idf`` default of
  ``pyserini.search.lucene.__main__`` becomes an ``int`` subclass equal to 0 that marks "not given").
  ``batch_search`` (``--batch-size``/``--threads``) encodes the batch's queries with our encoder in one
  model call first (Pyserini encodes them one at a time).
- ``pyserini.search.faiss._searcher``: ``FaissSearcher(index, "diffret")`` builds our dense encoder;
  any other string goes to Pyserini's own ``_init_encoder_from_str``.
- ``pyserini.search.hybrid.__main__`` (source rewrite, line numbers kept) and ``pyserini.search.hybrid.
  _searcher``: when our model is on either side (``hybrid_uses_ours``), the ``fusion`` section without
  ``--normalization`` does the paper's fusion (``PAPER_FUSION``: per-query min-max of each side's top
  ``--hits``, a missing document 0, ``alpha * sparse + (1 - alpha) * dense``, ``--weight-on-dense``
  swaps the sides), instead of ``alpha * sparse + dense`` on raw scores (impact scores run into the
  thousands, so the sparse side decided alone). ``--normalization`` is Pyserini's own normalisation
  (``PYSERINI_NORMALIZATION``, the same scores, but no division by zero when a side's scores are all
  equal, e.g. one hit); ``--no-normalization`` (accepted in the ``fusion`` section with our model only)
  is Pyserini's raw-score sum. Every other encoder: Pyserini's parse and fusion, unchanged.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from pyserini_diffret.integration.module_hooks import after_import, rewrite_source

KEY = "diffret"
CONFIG_NAME = "diffret_config.json"  # same as pyserini_diffret.core.config.CONFIG_NAME (kept import-free)
KEEP_ALL_MIN_IDF = -1
_MARK = "_diffret_registration"
_IMPORT = f"import argparse; import pyserini_diffret.integration.registration as {_MARK}"


class _DefaultMinIdf(int):
    """Pyserini's ``--min-idf`` default (0), marked so that our encoder can tell "not given" apart."""

    def __repr__(self) -> str:
        return "0"


DEFAULT_MIN_IDF = _DefaultMinIdf(0)


# -- selection ----------------------------------------------------------------------------------------
def is_diffret_folder(name: Any) -> bool:
    try:
        path = Path(os.fspath(name)).expanduser()
        return path.is_dir() and (path / CONFIG_NAME).is_file()
    except (TypeError, OSError):
        return False


def is_ours(name: Any) -> bool:
    """A model the user named as ours: a registered name (exactly, e.g. ``diffret``) or a folder with our config.

    Substrings decide nothing: ``some/diffret-lab/bert`` or ``DiffRet-splade`` are other models' names.
    """
    if not isinstance(name, (str, os.PathLike)):
        return False
    from pyserini_diffret.registry import registered_names  # noqa: PLC0415 - tiny, imports nothing heavy

    return os.fspath(name) in registered_names() or is_diffret_folder(name)


def class_hint(encoder: Any, encoder_class: str | None, class_map: Any = None) -> str | None:
    """The ``encoder_class`` Pyserini's ``init_encoder``/``init_query_encoder`` should go on with.

    Called by the rewritten commands before Pyserini reads ``encoder_class``, with the command's class map
    (where our key is the last one). A class given stays. Otherwise: ``diffret`` for our models
    (``is_ours``); ``None`` when one of Pyserini's own keys is a substring of the lower-cased name (its
    loop then finds the same first key as without us); ``"auto"`` when none is, where the loop would
    reach our key: that is Pyserini's own fallback (``_encoder_class = "auto"``, its Auto*Encoder), so the
    class and the arguments Pyserini builds are the same as without the plug-in.
    """
    if encoder_class is not None or not encoder:
        return encoder_class
    if is_ours(encoder):
        return KEY
    if class_map is None or KEY not in class_map or not isinstance(encoder, str):
        return None
    lowered = encoder.lower()
    if KEY in lowered and "auto" in class_map and not any(key in lowered for key in class_map if key != KEY):
        return "auto"
    return None


def device_for(encoder: Any, encoder_class: str | None, requested: Any, resolved: str) -> str:
    """The device for our encoder after Pyserini's ``resolve_device``, which asks torch about CUDA.

    An exported (ONNX) model runs on CUDA with onnxruntime-gpu even beside a CPU-only torch: where Pyserini
    fell back to CPU only because torch sees no CUDA, the requested device is given back when onnxruntime
    can use it. Every other encoder, and every other case, keeps Pyserini's choice.
    """
    ours = encoder_class == KEY or (encoder_class is None and is_ours(encoder))
    asked = str(requested or "cpu").strip().lower()
    if not ours or resolved != "cpu" or asked == "cpu":
        return resolved
    from pyserini_diffret.model import read_settings  # noqa: PLC0415
    from pyserini_diffret.registry import resolve_model  # noqa: PLC0415
    from pyserini_diffret.runtimes.onnx_runtime import OnnxRuntime  # noqa: PLC0415

    try:
        if read_settings(resolve_model(encoder)).runtime != "onnx":
            return resolved
        device = OnnxRuntime.check_device(asked)
    except (OSError, ValueError, RuntimeError):
        return resolved
    print(f"pyserini-diffret: {encoder} runs on {device} with onnxruntime's CUDA provider", file=sys.stderr)
    return device


class _LazyClass:
    """Stands in for one of our classes in Pyserini's class maps; imports it when first called."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.__name__ = module, name

    def resolve(self) -> type:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(self.module), self.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {self.module}.{self.__name__}>"


DOCUMENT_ENCODER = _LazyClass("pyserini_diffret.encoders.document", "DiffRetDocumentEncoder")
DENSE_QUERY_ENCODER = _LazyClass("pyserini_diffret.encoders.query", "DiffRetDenseQueryEncoder")
IMPACT_QUERY_ENCODER = _LazyClass("pyserini_diffret.encoders.query", "DiffRetImpactQueryEncoder")


def _put_last(mapping: dict, key: str, value: Any) -> None:
    """Make ``key`` the last entry of ``mapping``, in place (other modules hold the same dict).

    Last, so that Pyserini's first-substring-match loop over the keys meets every one of its own keys first.
    """
    mapping.pop(key, None)
    mapping[key] = value


# -- module patches -----------------------------------------------------------------------------------
def patch_encode_package(module) -> None:
    _put_last(module.document_encoder_class_map, KEY, DOCUMENT_ENCODER)
    _put_last(module.query_encoder_class_map, KEY, DENSE_QUERY_ENCODER)


def _is_diffret_impact_encoder(query_encoder: Any) -> bool:
    if isinstance(query_encoder, (str, os.PathLike)):
        return is_ours(query_encoder) and not os.path.isfile(query_encoder)
    return bool(getattr(query_encoder, "diffret_impact", False))


def patch_impact_searcher(module) -> None:
    cls = module.LuceneImpactSearcher
    if getattr(cls.__init__, "__diffret__", False):
        return
    original_init = cls.__init__
    original_from_str = cls.__dict__["_init_query_encoder_from_str"].__func__

    @functools.wraps(original_init)
    def __init__(self, index_dir, query_encoder, min_idf=DEFAULT_MIN_IDF, *args, **kwargs):
        encoder_type = kwargs.get("encoder_type", args[0] if args else "pytorch")
        if isinstance(min_idf, _DefaultMinIdf) and encoder_type == "pytorch" and _is_diffret_impact_encoder(query_encoder):
            min_idf = KEEP_ALL_MIN_IDF
        original_init(self, index_dir, query_encoder, min_idf, *args, **kwargs)

    @functools.wraps(original_from_str)
    def _init_query_encoder_from_str(query_encoder):
        if query_encoder is not None and _is_diffret_impact_encoder(query_encoder):
            return IMPACT_QUERY_ENCODER(os.fspath(query_encoder))
        return original_from_str(query_encoder)

    original_batch_search = cls.batch_search

    @functools.wraps(original_batch_search)
    def batch_search(self, queries, *args, **kwargs):
        encoder = getattr(self, "query_encoder", None)
        if getattr(self, "encoder_type", "pytorch") == "pytorch" and getattr(encoder, "diffret_impact", False) \
                and hasattr(encoder, "encode_batch"):
            encoder.encode_batch(list(queries))  # one batched model call fills the shared query cache
        return original_batch_search(self, queries, *args, **kwargs)

    __init__.__diffret__ = True
    cls.__init__ = __init__
    cls._init_query_encoder_from_str = staticmethod(_init_query_encoder_from_str)
    cls.batch_search = batch_search


def _unpatched_static(cls, name: str):
    """The function behind ``cls``'s staticmethod ``name``; None when it is missing or already ours."""
    method = cls.__dict__.get(name)
    if method is None or getattr(method.__func__, "__diffret__", False):
        return None
    return method.__func__


def patch_faiss_searcher(module) -> None:
    cls = module.FaissSearcher
    original = _unpatched_static(cls, "_init_encoder_from_str")
    if original is None:
        return

    @functools.wraps(original)
    def _init_encoder_from_str(encoder):
        if is_ours(encoder):
            return DENSE_QUERY_ENCODER(os.fspath(encoder))
        return original(encoder)

    _init_encoder_from_str.__diffret__ = True
    cls._init_encoder_from_str = staticmethod(_init_encoder_from_str)


# -- source rewrites (for code under ``if __name__ == "__main__":``) ----------------------------------
_CHOICES = re.compile(r"""(add_argument\(\s*['"]--encoder-class['"][^)]*?choices\s*=\s*\[)""")
_RESOLVE_DEVICE = re.compile(r"^(    )(device = resolve_device\(device, backend='torch'\))$", re.MULTILINE)
# After Pyserini resolves --device with torch: the class to go on with (``class_hint``, given the command's
# class map), and our ONNX models get back the device that onnxruntime (not torch) can reach.
def _after_resolve_device(class_map: str) -> str:
    return (rf"\1_diffret_requested_device = device; \2; encoder_class = {_MARK}.class_hint(encoder, "
            rf"encoder_class, {class_map}); device = {_MARK}.device_for(encoder, encoder_class, "
            "_diffret_requested_device, device)")


_INIT_ENCODER = re.compile(r"^([ \t]*encoder = init_encoder\(.*\))[ \t]*$", re.MULTILINE)
_MIN_IDF = re.compile(r"""(add_argument\(\s*['"]--min-idf['"],\s*type=int,\s*)default=0\b""")


def _sub(pattern: re.Pattern, replacement: str, source: str, module: str, what: str) -> str:
    new, count = pattern.subn(replacement, source, count=1)
    if count != 1:
        warnings.warn(f"pyserini-diffret: {module} has changed ({what} not found); "
                      "`--encoder diffret` may not work in this command", RuntimeWarning, stacklevel=3)
    return new


def _with_import(source: str, module: str) -> str:
    return _sub(re.compile(r"^import argparse$", re.MULTILINE), _IMPORT, source, module, "import argparse")


def rewrite_encode_main(source: str) -> str:
    module = "pyserini.encode.__main__"
    source = _with_import(source, module)
    source = _sub(_CHOICES, r'\1"diffret", ', source, module, "--encoder-class choices")
    source = _sub(_RESOLVE_DEVICE, _after_resolve_device("document_encoder_class_map"), source, module,
                  "init_encoder")
    return _sub(_INIT_ENCODER,
                rf'\1; {_MARK}.configure_document_encoder(encoder, args, globals().get("encoder_parser"))',
                source, module, "encoder = init_encoder(...)")


def rewrite_faiss_main(source: str) -> str:
    module = "pyserini.search.faiss.__main__"
    source = _with_import(source, module)
    source = _sub(_CHOICES, r'\1"diffret", ', source, module, "--encoder-class choices")
    return _sub(_RESOLVE_DEVICE, _after_resolve_device("query_encoder_class_map"), source, module,
                "init_query_encoder")


_PARSE_HYBRID = re.compile(r"^(    )args = parse_args\(parser, commands\)$", re.MULTILINE)


def rewrite_hybrid_main(source: str) -> str:
    module = "pyserini.search.hybrid.__main__"
    source = _with_import(source, module)
    return _sub(_PARSE_HYBRID, rf"\1args = {_MARK}.parse_hybrid_args(parse_args, parser, commands)", source,
                module, "args = parse_args(parser, commands)")


def rewrite_lucene_main(source: str) -> str:
    module = "pyserini.search.lucene.__main__"
    source = _with_import(source, module)
    return _sub(_MIN_IDF, rf"\1default={_MARK}.DEFAULT_MIN_IDF", source, module, "--min-idf")


# -- the encode command --------------------------------------------------------------------------------
_UNSET = object()


def _command_section(argv: list[str], command: str, commands: tuple[str, ...]) -> list[str] | None:
    """The tokens of one sub-command, split the way Pyserini's ``parse_args`` splits ``sys.argv``."""
    sections: list[list[str]] = [[]]
    for token in argv:
        if token in commands:
            sections.append([token])
        else:
            sections[-1].append(token)
    for section in sections[1:]:
        if section[0] == command:
            return section[1:]
    return None


def explicit_options(parser: argparse.ArgumentParser | None, tokens: list[str], dests: list[str]) -> set[str]:
    """Which of ``dests`` the user gave in ``tokens`` (argparse only fills in defaults it has not got)."""
    if parser is None:  # fall back to spelling; argparse would also accept unique prefixes
        flags = {token.split("=", 1)[0] for token in tokens}
        return {dest for dest in dests if "--" + dest.replace("_", "-") in flags}
    namespace = argparse.Namespace(**{dest: _UNSET for dest in dests})
    parser.parse_known_args(tokens, namespace=namespace)
    return {dest for dest in dests if getattr(namespace, dest) is not _UNSET}


def configure_document_encoder(encoder: Any, args: argparse.Namespace, encoder_parser=None,
                               argv: list[str] | None = None) -> None:
    """Set up our document encoder from ``python -m pyserini.encode``'s arguments (others: untouched)."""
    if not getattr(type(encoder), "diffret_document", False):
        return
    argv = sys.argv[1:] if argv is None else argv
    tokens = _command_section(argv, "encoder", ("input", "output", "encoder")) or []
    given = explicit_options(encoder_parser, tokens, ["dimension", "max_length"])
    to_faiss = bool(getattr(args.output, "to_faiss", False))
    encoder.representation = "dense" if to_faiss else "impact"
    encoder.ignore_call_max_length = True
    encoder.batch_size = args.encoder.batch_size
    if "max_length" in given:
        encoder.set_max_length(args.encoder.max_length)
    if to_faiss:
        if "dimension" not in given:
            args.encoder.dimension = encoder.dimension
        elif args.encoder.dimension != encoder.dimension:
            raise SystemExit(f"--dimension {args.encoder.dimension} does not match the model's vector size "
                             f"{encoder.dimension}; leave --dimension out to take it from the model")


# -- the hybrid command --------------------------------------------------------------------------------
NO_NORMALIZATION = "--no-normalization"


class _Fusion:
    """A (truthy) ``normalization`` value for ``HybridSearcher`` that names one of our fusion rules."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<fusion {self.name}>"


PAPER_FUSION = _Fusion("paper")  # our model, no --normalization: per-query min-max, convex weights, missing 0
PYSERINI_NORMALIZATION = _Fusion("pyserini")  # our model, --normalization: Pyserini's, safe when scores are equal


def hybrid_uses_ours(args: argparse.Namespace) -> bool:
    """Whether the hybrid command's dense or (impact) sparse side runs one of our models (``is_ours``)."""
    dense, sparse = getattr(args, "dense", None), getattr(args, "sparse", None)
    if dense is not None and (getattr(dense, "encoder_class", None) == KEY or is_ours(getattr(dense, "encoder", None))):
        return True
    return bool(sparse is not None and getattr(sparse, "impact", False)
                and _is_diffret_impact_encoder(getattr(sparse, "encoder", None)))


def _drop_from_section(tokens: list[str], command: str, commands: tuple[str, ...], flag: str) -> tuple[list[str], int]:
    """``tokens`` without ``flag`` inside ``command``'s section (split as Pyserini splits), and how many went."""
    kept, dropped, section = [], 0, None
    for token in tokens:
        if token in commands:
            section = token
        elif section == command and token == flag:
            dropped += 1
            continue
        kept.append(token)
    return kept, dropped


def parse_hybrid_args(parse_args, parser: argparse.ArgumentParser, commands) -> argparse.Namespace:
    """``python -m pyserini.search.hybrid``'s arguments: Pyserini's ``parse_args``, then our fusion default.

    With none of our models the answer is Pyserini's own (a ``--no-normalization`` is then parsed again,
    with the line as given, so that Pyserini rejects it as before). With one of ours,
    ``args.fusion.normalization`` becomes ``PAPER_FUSION`` (no flag), ``PYSERINI_NORMALIZATION``
    (``--normalization``) or ``False`` (``--no-normalization``); a missing ``fusion`` section takes its
    defaults.
    """
    names = tuple(commands.choices)
    saved = sys.argv
    kept, dropped = _drop_from_section(saved[1:], "fusion", names, NO_NORMALIZATION)
    sys.argv = [saved[0], *kept]
    try:
        args = parse_args(parser, commands)
    finally:
        sys.argv = saved
    if not hybrid_uses_ours(args):
        return parse_args(parser, commands) if dropped else args
    fusion_parser = commands.choices["fusion"]
    if args.fusion is None:
        args.fusion = fusion_parser.parse_args([])
    fusion = args.fusion
    if dropped and fusion.normalization:
        fusion_parser.error(f"--normalization and {NO_NORMALIZATION} exclude each other")
    if dropped:
        fusion.normalization = False
        rule = f"alpha * sparse + dense on raw scores ({NO_NORMALIZATION})"
    elif fusion.normalization:
        fusion.normalization = PYSERINI_NORMALIZATION
        rule = "Pyserini's --normalization"
    else:
        if not 0.0 <= fusion.alpha <= 1.0:
            fusion_parser.error(f"--alpha {fusion.alpha:g}: the default fusion with our model weighs the sides "
                                "alpha and 1 - alpha, so alpha must be in [0, 1] (Pyserini's alpha * sparse + "
                                f"dense: add --normalization or {NO_NORMALIZATION})")
        fusion.normalization = PAPER_FUSION
        sparse_weight = 1.0 - fusion.alpha if fusion.weight_on_dense else fusion.alpha
        rule = (f"per-query min-max of each side's top {fusion.hits}, {sparse_weight:g} * sparse + "
                f"{1.0 - sparse_weight:g} * dense, missing = 0 (the paper's; --normalization: Pyserini's, "
                f"{NO_NORMALIZATION}: raw scores)")
    print(f"pyserini-diffret: hybrid fusion: {rule}", file=sys.stderr)
    return args


def _min_max(hits: dict[str, float]) -> dict[str, float]:
    """Scores scaled to [0, 1]; all equal (one hit, say) -> 1, as ``pyserini_diffret.fusion`` does."""
    if not hits:
        return {}
    low, high = min(hits.values()), max(hits.values())
    if high == low:
        return dict.fromkeys(hits, 1.0)
    span = high - low
    return {docid: (score - low) / span for docid, score in hits.items()}


def _ranked(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]  # ties by docid, as the paper's


def paper_fusion(dense: dict[str, float], sparse: dict[str, float], alpha: float, k: int,
                 weight_on_dense: bool = False) -> list[tuple[str, float]]:
    """The paper's fusion of one query's hit lists, weights named as in Pyserini's ``HybridSearcher``.

    ``alpha`` is the sparse side's weight (the dense side's with ``weight_on_dense``), the other side gets
    ``1 - alpha``; ``alpha = 0.5`` is ``python -m pyserini_diffret.fusion --alpha 0.5``.
    """
    sparse_weight = 1.0 - alpha if weight_on_dense else alpha
    fused: dict[str, float] = {}
    for hits, weight in ((_min_max(dense), 1.0 - sparse_weight), (_min_max(sparse), sparse_weight)):
        for docid, value in hits.items():
            fused[docid] = fused.get(docid, 0.0) + weight * value
    return _ranked(fused, k)


def _centred(hits: dict[str, float]):
    """Pyserini's ``--normalization`` of one side as a function of the docid; all-equal scores: hits 0.5,
    missing -0.5 (where Pyserini divides by zero)."""
    if hits:
        low, high = min(hits.values()), max(hits.values())
    else:
        low, high = 0, 1
    if high == low:
        return lambda docid: 0.5 if docid in hits else -0.5
    middle, span = (low + high) / 2, high - low
    return lambda docid: (hits.get(docid, low) - middle) / span


def pyserini_normalization(dense: dict[str, float], sparse: dict[str, float], alpha: float, k: int,
                           weight_on_dense: bool = False) -> list[tuple[str, float]]:
    """Pyserini's ``normalization=True`` fusion, defined also when a side's scores are all equal."""
    dense_score, sparse_score = _centred(dense), _centred(sparse)
    fused = {}
    for docid in set(dense) | set(sparse):
        d, s = dense_score(docid), sparse_score(docid)
        fused[docid] = alpha * s + d if not weight_on_dense else s + alpha * d
    return _ranked(fused, k)


def _all_equal(hits: dict[str, float]) -> bool:
    return bool(hits) and min(hits.values()) == max(hits.values())


def patch_hybrid_searcher(module) -> None:
    cls = module.HybridSearcher
    original = _unpatched_static(cls, "_hybrid_results")
    if original is None:
        return
    result = module.DenseSearchResult

    @functools.wraps(original)
    def _hybrid_results(dense_results, sparse_results, alpha, k, normalization=False, weight_on_dense=False):
        if isinstance(normalization, _Fusion):
            dense = {hit.docid: hit.score for hit in dense_results}
            sparse = {hit.docid: hit.score for hit in sparse_results}
            if normalization.name == PAPER_FUSION.name:
                fused = paper_fusion(dense, sparse, alpha, k, weight_on_dense)
            elif _all_equal(dense) or _all_equal(sparse):
                fused = pyserini_normalization(dense, sparse, alpha, k, weight_on_dense)
            else:  # Pyserini's own arithmetic, to the last bit
                return original(dense_results, sparse_results, alpha, k, True, weight_on_dense)
            return [result(docid, score) for docid, score in fused]
        return original(dense_results, sparse_results, alpha, k, normalization, weight_on_dense)

    _hybrid_results.__diffret__ = True
    cls._hybrid_results = staticmethod(_hybrid_results)


_registered = False


def register() -> None:
    """Hook the patches above to the Pyserini modules; imports nothing from Pyserini. Idempotent."""
    global _registered
    if _registered:
        return
    _registered = True
    after_import("pyserini.encode", patch_encode_package)
    after_import("pyserini.search.lucene._impact_searcher", patch_impact_searcher)
    after_import("pyserini.search.faiss._searcher", patch_faiss_searcher)
    after_import("pyserini.search.hybrid._searcher", patch_hybrid_searcher)
    rewrite_source("pyserini.encode.__main__", rewrite_encode_main)
    rewrite_source("pyserini.search.faiss.__main__", rewrite_faiss_main)
    rewrite_source("pyserini.search.lucene.__main__", rewrite_lucene_main)
    rewrite_source("pyserini.search.hybrid.__main__", rewrite_hybrid_main)
