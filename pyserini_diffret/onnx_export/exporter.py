"""Export a DiffRetriever backbone to a self-contained ONNX model folder.

The graph is ``RetrieverModule`` traced once (the module the torch runtime runs, so the math exists
once): inputs ``input_ids``/``attention_mask`` (int64 ``[B, L]``), ``slot_offsets`` (int64 ``[K]``,
``arange(K)``: K is a dynamic dimension, so one graph serves queries and documents), ``content_ids``
(int64 ``[B, A]``, each text's own vocabulary ids padded with -1) and, for models with the zero-shot
stop-token rule only, ``stop_truncation`` (bool scalar); outputs ``slot_vectors`` (float32 ``[B, K, H]``)
and ``content_scores`` (float32 ``[B, K, A]``). The LM head runs on the K slots only, read at the content
ids (over the whole vocabulary only for the stop-token rule); top-k and pooling run on the host.

Steps: load the torch model -> trace with fused attention (``attention.py``) -> fix the output shapes ->
onnxruntime.transformers fusions (LayerNorm, SkipLayerNorm, RMSNorm, BiasGelu...) -> precision
(fp16: the module is traced in half precision, so the dtype boundaries are exactly torch's: body and LM
head in fp16, read-out in fp32; int8: dynamic quantisation of the MatMul weights, for CPU, a tied
input-embedding/LM-head table stored once as int8 with per-row scales, ``tied.py``; int8w/int4w:
weight-only quantisation, 8/4-bit weight blocks with float16 scales, GPTQ rounding calibrated on texts run
through the fp32 graph, float32 compute, ``weight_only.py``) -> write
``model.onnx`` (external data ``model.onnx.data`` above 2 GB), the tokenizer files and
``diffret_config.json`` (runtime "onnx", export record with the sha256 of every other file written, checked
at load) into a fresh folder, which replaces ``output`` only once complete.
"""
from __future__ import annotations

import dataclasses
import gc
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.core.record import (
    EXTERNAL_DATA_NAME,
    GRAPH_NAME,
    INPUT_NAMES,
    OUTPUT_NAMES,
    PRECISIONS,
    RECORD_KEY,
    WEIGHT_ONLY_PRECISIONS,
    ExportRecord,
    folder_checksums,
)
from pyserini_diffret.core.spec import ONE_PASS_BACKBONES

DEFAULT_OPSET = 18
PROTOBUF_LIMIT = 2 * 1024**3  # larger graphs must keep their weights in an external data file
# Traced with several texts of different lengths (padding present: transformers drops an all-ones mask,
# and a trace without a mask would not generalise) and K = 3 (no size-1 dimension gets specialised).
TRACE_TEXTS = ["Aspirin reduces the risk of heart attack.", "bone", "Vitamin D deficiency is associated with fractures."]
TRACE_K = 3

Log = Callable[[str], None]
Calibration = Any  # None (built-in texts), "none"/False (round to nearest), a list of texts or a text file


class ExportError(RuntimeError):
    """The export cannot proceed (bad source, occupied output, unsupported backbone...)."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    config: RetrieverConfig
    record: ExportRecord
    report: Any = None  # VerificationReport when verify=True

    @property
    def files(self) -> list[tuple[str, int]]:
        return sorted((p.name, p.stat().st_size) for p in self.path.iterdir() if p.is_file())


def export_model(source: str | Path, output: str | Path, *, backbone: str | None = None, k_query: int | None = None,
                 k_doc: int | None = None, precision: str = "fp32", opset: int | None = None, verify: bool = False,
                 trust_remote_code: bool = False, calibration: Calibration = None, **options: Any) -> Path:
    """Export ``source`` (a Hugging Face model folder, or a registered name) to the folder ``output``.

    ``backbone``: ``mlm``, ``dream``, ``llada`` or None/"auto" (detected); ``k_query``/``k_doc``: the
    defaults stored in the config (the graph accepts any K); ``precision``: ``fp32``, ``fp16`` (for CUDA),
    ``int8`` (dynamic quantisation, for CPU: fast, but activations quantised per tensor), ``int8w`` or
    ``int4w`` (weight-only quantisation: 8/4-bit weights, float32 compute; ``int8w`` is the accurate small
    one); ``calibration`` (``int8w``/``int4w``): None for the built-in texts, a list of texts or a text
    file (one per line) to calibrate GPTQ rounding on, or ``"none"`` for round-to-nearest; ``verify``:
    compare the export with torch on sample texts and raise ``ExportError`` when it misses the limits.
    Further options: ``overwrite`` (replace an earlier export), ``fused_attention`` (default True),
    ``fusions`` (onnxruntime.transformers fusions; None, the default: only for graphs under 2 GB, whose
    fusion passes fit in memory; onnxruntime still applies its own fusions when it loads any graph),
    ``external_data`` (None: only above
    2 GB), ``device`` for tracing (default "cpu"), ``log`` (a callable for progress lines), and any
    ``RetrieverConfig`` field (``terms_per_slot``, ``max_document_length``, ``logit_shift``...). Returns the output
    folder.
    """
    return export(source, output, backbone=backbone, k_query=k_query, k_doc=k_doc, precision=precision, opset=opset,
                  verify=verify, trust_remote_code=trust_remote_code, calibration=calibration, **options).path


def export(source: str | Path, output: str | Path, *, backbone: str | None = None, k_query: int | None = None,
           k_doc: int | None = None, precision: str = "fp32", opset: int | None = None, verify: bool = False,
           trust_remote_code: bool = False, overwrite: bool = False, fused_attention: bool = True,
           fusions: bool | None = None, external_data: bool | None = None, device: str = "cpu", log: Log | None = None,
           calibration: Calibration = None, **config_overrides: Any) -> ExportResult:
    """``export_model`` returning the full result (config, export record, verification report)."""
    log = log or (lambda message: None)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old: exports are made and checked at opset >= {DEFAULT_OPSET}")
    _check_overrides(config_overrides)
    calibration_texts = _check_calibration(calibration, precision)
    source_path = _check_source(source)
    output = Path(output).expanduser()
    _check_output(output, overwrite)
    backbone = None if backbone in (None, "auto") else backbone
    name = _check_backbone(source_path, backbone)

    import torch  # noqa: PLC0415

    from pyserini_diffret.model import load_model  # noqa: PLC0415

    log(f"loading {source_path} ({name} backbone) with torch ...")
    load = dict(backbone=name, k_query=k_query, k_doc=k_doc, runtime="torch", device=device,
                trust_remote_code=trust_remote_code, **config_overrides)
    retriever = load_model(source_path, dtype="float16" if precision == "fp16" else "float32", **load)
    adapter = retriever.runtime.backbone
    total_bytes = sum(p.numel() * p.element_size() for p in retriever.runtime.module.parameters())
    use_external = bool(external_data) or (external_data is None and total_bytes > PROTOBUF_LIMIT - 64 * 1024**2)
    record = ExportRecord(
        precision=precision,
        opset=opset,
        terms_per_slot=retriever.config.terms_per_slot,
        logit_shift=adapter.logit_shift,
        tail_length=len(retriever.layout.tail_ids),
        layout=ExportRecord.layout_dict(retriever.layout),
        max_positions=retriever.spec.max_positions,
        model_type=str(getattr(adapter.model.config, "model_type", "")),
        versions=_versions(torch),
    )

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".diffret-export-", dir=output.parent) as work:
        work = Path(work)
        folder = work / "model"
        folder.mkdir()
        raw = work / "traced" / GRAPH_NAME
        raw.parent.mkdir()
        log(f"tracing the graph (opset {opset}, {'fused' if fused_attention else 'plain'} attention) ...")
        attention = _trace(retriever.runtime.module.eval(), retriever, raw, opset, fused_attention, torch)
        record.attention = "fused" if attention.fused_calls else "plain"
        retriever.tokenizer.save_pretrained(str(folder))
        config = _export_config(retriever, record, source_path)
        feeds = None
        if precision in WEIGHT_ONLY_PRECISIONS and calibration_texts is not False:
            from pyserini_diffret.onnx_export.calibration import calibration_feeds  # noqa: PLC0415

            feeds = calibration_feeds(retriever, calibration_texts)
        # From here on only the graph is needed: free the torch weights before the graph passes copy it.
        del retriever, adapter
        gc.collect()
        model, record.notes = _finish_graph(raw, config.hidden_size, attention, log)
        record.inputs = [i.name for i in model.graph.input]  # stop_truncation only where the stop rule is built in
        if fusions is None and use_external:
            # The offline fusion passes hold several copies of the graph: ~10x its size (a 2.3 GB graph
            # needed more than 23 GB), so a graph past 2 GB keeps onnxruntime's own load-time fusions only.
            record.notes.append("onnxruntime.transformers fusions not applied: graph above 2 GB (pass fusions=True)")
            log("graph fusions skipped for a graph above 2 GB (onnxruntime fuses at load time)")
        elif fusions is not False:
            model, record.fusions, fusion_notes = _apply_fusions(model, work, use_external, log)
            record.notes.extend(fusion_notes)
        if precision == "int8":
            log("quantising MatMul weights to int8 (dynamic quantisation) ...")
            model, shared = _quantise_int8(model, work, use_external)
            record.shared_embeddings = [table.to_dict() for table in shared]
            for table in shared:
                log(f"vocabulary table {'x'.join(map(str, table.shape))} stored once as int8 (per-row scales), read by "
                    f"{table.embedding_lookups} embedding lookup(s), {table.head_row_reads} LM-head row read(s) and "
                    f"{table.lm_heads} whole-vocabulary LM head(s)")
        elif precision in WEIGHT_ONLY_PRECISIONS:
            model, weight_only, shared = _quantise_weight_only(model, precision, feeds, calibration_texts, work,
                                                               use_external, log)
            record.weight_only = weight_only.to_dict()
            record.shared_embeddings = [table.to_dict() for table in shared]
            record.notes.extend(weight_only.notes)
        _stamp(model)
        graph_bytes, data_bytes = _save_graph(model, folder, use_external)
        del model
        record.graph_bytes = graph_bytes
        record.external_data = EXTERNAL_DATA_NAME if data_bytes is not None else None
        record.external_data_bytes = data_bytes
        record.sha256 = folder_checksums(folder, exclude=(CONFIG_NAME,))  # every file written but the config
        config = _with_record(config, record)
        config.save(folder)
        _replace(folder, output)
    log(f"wrote {output}")
    result = ExportResult(output, config, record)
    if verify:
        result = _verify(result, source_path, load, log)
    return result


# -- checks ------------------------------------------------------------------------------------------------
def _check_overrides(overrides: dict[str, Any]) -> None:
    from pyserini_diffret.model import CONFIG_OPTIONS  # noqa: PLC0415

    unknown = sorted(set(overrides) - CONFIG_OPTIONS - {"dtype"})
    if "dtype" in overrides:
        raise ExportError(f"dtype is set by precision ({', '.join(PRECISIONS)}); do not pass it")
    if unknown:
        raise ExportError(f"unknown export option(s) {unknown}; config options are: {', '.join(sorted(CONFIG_OPTIONS))}")


def _check_calibration(calibration: Calibration, precision: str):
    """None: built-in texts; False: none (round to nearest); else (queries, passages) read from the texts/file."""
    if calibration is None:
        return None
    if precision not in WEIGHT_ONLY_PRECISIONS:
        raise ExportError(f"calibration texts are for the weight-only precisions ({', '.join(WEIGHT_ONLY_PRECISIONS)}),"
                          f" not {precision}")
    if calibration is False or (isinstance(calibration, str) and calibration.lower() == "none"):
        return False
    from pyserini_diffret.onnx_export.calibration import read_texts  # noqa: PLC0415

    try:
        return read_texts(calibration)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ExportError(str(error)) from None


def _check_source(source: str | Path) -> Path:
    from pyserini_diffret.registry import resolve_model  # noqa: PLC0415

    try:
        path = resolve_model(source)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise ExportError(f"source: {error}") from None
    if (path / CONFIG_NAME).is_file():
        try:
            config = RetrieverConfig.load(path)
        except ValueError as error:
            raise ExportError(f"source: {error}") from None
        if config.runtime == "onnx":
            raise ExportError(f"{path}: already an exported ONNX model folder; export from the Hugging Face folder")
    if not (path / "config.json").is_file():
        raise ExportError(f"{path}: no config.json; the source must be a Hugging Face model folder")
    return path


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ExportError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise ExportError(f"{output}: exists and is not empty; choose a new folder or pass overwrite (--overwrite)")
        if not _is_export(output):
            raise ExportError(
                f"{output}: exists, is not empty and is not an exported model folder; refusing to overwrite it"
            )


def _is_export(folder: Path) -> bool:
    try:
        return RetrieverConfig.load(folder).runtime == "onnx"
    except (OSError, ValueError, TypeError):
        return False


def _check_backbone(path: Path, backbone: str | None) -> str:
    from pyserini_diffret.model import read_settings  # noqa: PLC0415

    try:
        name = read_settings(path, backbone).backbone
    except (ValueError, FileNotFoundError) as error:
        raise ExportError(str(error)) from None
    if name not in ONE_PASS_BACKBONES:
        raise ExportError(
            f"backbone {name!r} cannot be exported as one graph: the autoregressive baseline decodes its K "
            f"representations in K dependent passes. Exportable backbones: {', '.join(ONE_PASS_BACKBONES)}"
        )
    return name


# -- graph -------------------------------------------------------------------------------------------------
def _trace(module, retriever, path: Path, opset: int, fused: bool, torch):
    from pyserini_diffret.onnx_export.attention import fused_attention, register_symbolic  # noqa: PLC0415

    batch = retriever.prompts.build(TRACE_TEXTS, "document", TRACE_K)
    if batch.attention_mask.all():
        raise ExportError("internal: the trace batch has no padding")
    device = next(module.parameters()).device
    args = (
        torch.from_numpy(batch.input_ids).to(device),
        torch.from_numpy(batch.attention_mask).to(device),
        torch.arange(TRACE_K, device=device),
        torch.from_numpy(retriever.content.ids(TRACE_TEXTS)).to(device),
        torch.tensor(False, device=device),
    )
    register_symbolic()
    dynamic = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "slot_offsets": {0: "slots"},
        "content_ids": {0: "batch", 1: "content"},
        "slot_vectors": {0: "batch", 1: "slots"},
        "content_scores": {0: "batch", 1: "slots", 2: "content"},
    }
    with _quiet_tracing(), torch.no_grad(), fused_attention(fused) as record:
        torch.onnx.export(
            module, args, str(path), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True,
            custom_opsets={"com.microsoft": 1} if fused else None,
        )
    if fused and record.notes:
        warnings.warn("some attention calls were left unfused: " + "; ".join(sorted(set(record.notes))), stacklevel=3)
    return record


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The legacy exporter and transformers warn at length about tracing; none of it is actionable here."""
    import logging  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger = logging.getLogger("transformers")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _finish_graph(path: Path, hidden: int, attention, log: Log):
    """Load the traced graph, give the outputs their true shapes, drop stale shape annotations."""
    import onnx  # noqa: PLC0415

    model = onnx.load(str(path))
    notes = []
    if attention.notes:
        notes.append("attention left unfused in places: " + "; ".join(sorted(set(attention.notes))))
    shapes = {"slot_vectors": ["batch", "slots", hidden], "content_scores": ["batch", "slots", "content"]}
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for dim in shapes[value.name]:
            entry = dims.add()
            if isinstance(dim, str):
                entry.dim_param = dim
            else:
                entry.dim_value = int(dim)
    # The legacy exporter annotates some intermediates with wrong ranks (onnxruntime then warns on every
    # run); onnxruntime infers every shape itself.
    del model.graph.value_info[:]
    model.doc_string = (
        "DiffRetriever encoder: K mask slots -> slot_vectors [B,K,H] (L2-normalised) and content_scores [B,K,A] "
        "(relu(LM-head logits) at each text's own vocabulary ids content_ids [B,A]; per-slot top-k, log1p and "
        "the max over slots follow on the host)"
    )
    log(f"graph: {len(model.graph.node)} nodes, {attention.fused_calls} fused attention calls")
    return model, notes


def _apply_fusions(model, work: Path, external: bool, log: Log):
    """onnxruntime.transformers fusions that fit every backbone; skipped (with a note) when they fail.

    model_type "bert" covers LayerNorm/SkipLayerNorm, RMSNorm (SimplifiedLayerNormalization) and
    SkipSimplifiedLayerNorm, Gelu/BiasGelu. Attention is already fused by the export, and the
    embedding fusion is off: it assumes positions 0..L-1, while left-padded texts count positions from
    their first real token.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions  # noqa: PLC0415
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False
    options.enable_attention = False
    options.enable_rotary_embeddings = False
    try:
        with _quiet_tracing(), _quiet_onnxruntime_tools(), _reduce_shape_rules():
            if external:  # the optimizer cannot take a >2 GB model in memory: hand it a path
                path = work / "prefusion" / GRAPH_NAME
                _save_graph(model, path.parent, True, make=True)
                optimized = optimize_model(str(path), model_type="bert", optimization_options=options, opt_level=0)
            else:
                optimized = optimize_model(model, model_type="bert", optimization_options=options, opt_level=0)
            optimized.topological_sort()
            stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    except Exception as error:  # noqa: BLE001 - a failed optional optimisation must not fail the export
        log(f"graph fusions skipped: {type(error).__name__}: {error}")
        return model, {}, [f"onnxruntime.transformers fusions skipped: {type(error).__name__}: {error}"]
    log("fusions: " + (", ".join(f"{k} x{v}" for k, v in sorted(stats.items())) or "none applied"))
    return optimized.model, stats, []


@contextmanager
def _quiet_onnxruntime_tools() -> Iterator[None]:
    """onnxruntime's tools log and print progress chatter (to stdout); keep the CLI output clean."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415
    import logging  # noqa: PLC0415

    loggers = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion_base", "onnx_model", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _reduce_shape_rules() -> Iterator[None]:
    """Teach onnxruntime's symbolic shape inference the opset-18 reductions it lacks (ReduceL2, ReduceMax...).

    From opset 18 every Reduce* takes its axes as an input, exactly like ReduceSum since opset 13, whose
    rule the tool has; without these rules inference stops at ``F.normalize``'s ReduceL2 and the fusions
    that need shapes (SkipLayerNorm) are silently skipped. Only the shape tool is taught; the graph is
    unchanged.
    """
    import importlib  # noqa: PLC0415

    import onnxruntime.transformers.optimizer  # noqa: F401, PLC0415 - puts the tools folder on sys.path

    names = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMin", "ReduceSumSquare")
    # The fusion tools import the module as top-level ``symbolic_shape_infer``: a second copy of the class.
    classes = {importlib.import_module(m).SymbolicShapeInference
               for m in ("onnxruntime.tools.symbolic_shape_infer", "symbolic_shape_infer")}
    originals = {cls: cls.__init__ for cls in classes}

    def patched(original):
        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            rule = self._infer_ReduceSum
            for name in names:
                self.dispatcher_.setdefault(name, lambda node, rule=rule: rule(node) if len(node.input) > 1 else None)
        return init

    for cls, original in originals.items():
        cls.__init__ = patched(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.__init__ = original


def _quantise_int8(model, work: Path, external: bool):
    """Dynamic int8 quantisation of the MatMul weights; a tied embedding table is stored once, as int8.

    Returns the quantised model and the ``tied.SharedTable`` list (empty for untied models).
    """
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from pyserini_diffret.onnx_export.tied import share_tied_embeddings  # noqa: PLC0415

    # Before the quantiser: the LM head it would quantise is rewritten to read the shared int8 table.
    shared = share_tied_embeddings(model)
    source = work / "prequant" / GRAPH_NAME
    _save_graph(model, source.parent, external, make=True)
    target = work / "quantised" / GRAPH_NAME
    target.parent.mkdir()
    with _quiet_onnxruntime_tools(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"], use_external_data_format=external,
            # Contrib operators (MultiHeadAttention...) have no shape-inference types for the quantiser.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return onnx.load(str(target)), shared


def _quantise_weight_only(model, precision: str, feeds, texts, work: Path, external: bool, log: Log):
    """Weight-only quantisation (``weight_only.py``); GPTQ rounding when calibration feeds are given and fit."""
    from pyserini_diffret.onnx_export import weight_only  # noqa: PLC0415
    from pyserini_diffret.core.devices import physical_cores  # noqa: PLC0415

    bits = weight_only.BITS[precision]
    hessians, calibration, notes = None, None, []
    if feeds:
        inputs = sorted({name for names in weight_only.find_matmul_weights(model).values() for name in names})
        needed = weight_only.hessian_bytes(model, inputs)
        if needed > weight_only.HESSIAN_BUDGET:
            notes.append(f"GPTQ skipped (its Hessians would take {needed / 1024**3:.1f} GiB): weights rounded to "
                         "nearest")
            log(notes[-1])
        else:
            log(f"calibrating: {len(feeds)} batches of texts through the fp32 graph ...")
            graph, model = _calibration_graph(model, inputs, work, external)
            hessians, tokens = weight_only.collect_hessians(graph, inputs, feeds, threads=physical_cores())
            del graph
            calibration = {"source": "built-in" if texts is None else "given", "batches": len(feeds), "tokens": tokens,
                           "texts": int(sum(f["input_ids"].shape[0] for f in feeds))}
    log(f"quantising weights to {bits} bits ({'GPTQ' if hessians else 'round to nearest'}, float16 scales per "
        f"{weight_only.BLOCK} weights; float32 compute) ...")
    result, shared = weight_only.quantise_weight_only(model, bits, hessians, log)
    result.calibration = calibration
    result.notes[:0] = notes
    return model, result, shared


def _calibration_graph(model, inputs: list[str], work: Path, external: bool):
    """(the fp32 graph with the MatMul inputs as extra outputs: bytes, or a path above 2 GB; the model).

    Saving with external data empties the in-memory tensors, so that model comes back reloaded.
    """
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    count = len(model.graph.output)
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs)
    if external:
        path = work / "calibration" / GRAPH_NAME
        _save_graph(model, path.parent, True, make=True)
        del model
        model = onnx.load(str(path))
        graph = str(path)
    else:
        graph = model.SerializeToString()
    del model.graph.output[count:]
    return graph, model


def _stamp(model) -> None:
    from pyserini_diffret import __version__  # noqa: PLC0415

    model.producer_name = "pyserini-diffret"  # set last: the fusion tools check for "pytorch"
    model.producer_version = __version__


def _save_graph(model, folder: Path, external: bool, make: bool = False) -> tuple[int, int | None]:
    import onnx  # noqa: PLC0415

    if make:
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / GRAPH_NAME
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA_NAME, size_threshold=1024)
        data = folder / EXTERNAL_DATA_NAME
        return path.stat().st_size, data.stat().st_size if data.exists() else 0
    onnx.save_model(model, str(path))
    return path.stat().st_size, None


def _versions(torch) -> dict[str, str]:
    import onnx  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    from pyserini_diffret import __version__  # noqa: PLC0415

    return {"pyserini_diffret": __version__, "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _export_config(retriever, record: ExportRecord, source: Path) -> RetrieverConfig:
    config = retriever.config
    mask_token = config.mask_token or retriever.tokenizer.convert_ids_to_tokens(record.layout["mask_id"])
    return _with_record(dataclasses.replace(
        config, runtime="onnx", hidden_size=retriever.hidden_size, vocab_size=retriever.vocab_size,
        mask_token=mask_token, source=config.source or str(source),
    ), record)


def _with_record(config: RetrieverConfig, record: ExportRecord) -> RetrieverConfig:
    extra = {key: value for key, value in config.extra.items() if key != RECORD_KEY}
    extra[RECORD_KEY] = record.to_dict()
    return dataclasses.replace(config, extra=extra)


def _replace(folder: Path, output: Path) -> None:
    if output.exists():
        if any(output.iterdir()):
            shutil.rmtree(output)  # an earlier export (checked in _check_output)
        else:
            output.rmdir()
    folder.rename(output)


# -- verification ------------------------------------------------------------------------------------------
def _verify(result: ExportResult, source: Path, load: dict[str, Any], log: Log) -> ExportResult:
    """Compare the export with the source run by torch in fp32 (the reference for every precision)."""
    from pyserini_diffret.model import load_model  # noqa: PLC0415
    from pyserini_diffret.onnx_export.verify import compare_models  # noqa: PLC0415

    log("verifying against torch (fp32) on sample texts ...")
    reference = load_model(source, dtype="float32", **load)
    exported = load_model(result.path, device="cpu")
    report = compare_models(exported, reference, precision=result.record.precision)
    record = dataclasses.replace(result.record, verification=report.to_dict())
    config = _with_record(result.config, record)
    config.save(result.path)
    result = ExportResult(result.path, config, record, report)
    if not report.passed:
        raise VerificationFailed(result)
    return result


class VerificationFailed(ExportError):
    def __init__(self, result: ExportResult) -> None:
        self.result = result
        super().__init__(f"{result.path}: the export misses the {result.record.precision} limits:\n"
                         + "\n".join(result.report.failures))
