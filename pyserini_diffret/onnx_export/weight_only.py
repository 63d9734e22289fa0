"""Weight-only quantisation (precisions ``int8w`` and ``int4w``): weights stored in 8 or 4 bits, activations
and arithmetic in float32.

Why: dynamic quantisation (``int8``) also quantises every MatMul's input activations to int8 with one
scale per tensor, which real BERT activations do not survive: on MiniLM-L6 the slot vectors move by up
to ~0.4 (relative) from torch fp32, and the impact weights by up to 81. Weights alone, in 8-bit blocks,
move them by ~3e-2 median / 5e-2 worst when rounded to nearest (the model amplifies a 0.5% weight error
~10-fold), and by ~1e-2 / 1.7e-2 with GPTQ rounding (below); activations stay exact.

Storage (standard ONNX operators only, any execution provider): each quantised float initializer is
replaced by integer blocks, float16 scales and a small constant subgraph that rebuilds it under its own
name, so the nodes that read it are unchanged. onnxruntime folds constant subgraphs when it creates the
session (any graph optimisation level but "disabled"), so a session runs float32 MatMuls at fp32 speed;
the file holds 1 (``int8w``) or 0.5 (``int4w``) byte per weight plus a 2-byte scale per block of
``BLOCK`` weights. The price is memory: the session holds float32 weights, as an fp32 export does (and
the folding needs ~2x that briefly while the session is created). MatMulNBits, onnxruntime's contrib
operator for the same blocks, keeps them packed, but needs float32 scales (+1.4 MB on MiniLM) and
onnxruntime's contrib kernels, and was no faster: as accurate and 10-25% slower at accuracy_level 0
(float32 arithmetic), 0-10% faster but 3x less accurate at level 4 (int8 arithmetic on 32-value blocks).

- MatMul weights ``W [K, N]``: one block = ``BLOCK`` consecutive weights of one output column along K,
  stored ``[K/BLOCK, BLOCK, N]`` with scales ``[K/BLOCK, 1, N]``; rebuilt as ``Reshape(Cast(q) * Cast(s))``.
- A vocabulary table read by rows (``tied.find_tied_tables``: the LM head read at the content ids, tied or
  not to the input embedding) ``E [V, H]`` is stored once as ``[V, H/BLOCK, BLOCK]``, blocks along H (the
  LM head's input dimension, so these are exactly the blocks its MatMul weight ``E^T`` would get). Each
  Gather reads the int8 rows it needs and dequantises them at run time; only for the whole-vocabulary LM
  head of the zero-shot stop-token rule is ``E`` (then ``E^T``) rebuilt as a constant. Rounded to nearest:
  the lookup's input error travels through the whole network, and the row reads have no calibration
  inputs for GPTQ.
- Other large lookup tables (position embeddings, an untied input embedding): float16 + ``Cast``.
- 4 bits: values ``q + 8`` in [0, 15], two per byte: byte ``j`` of a block holds value ``j`` (low nibble)
  and value ``j + BLOCK/2`` (high nibble); unpacked with ``BitwiseAnd``/``BitShift``/``Concat``.

Scales are symmetric: a block's extreme value maps to ``-2^(bits-1)`` exactly (its scale is rounded to
float16 first, and the block is quantised with the rounded scale). Rounding is GPTQ (Frantar et al.,
2022: columns quantised one at a time, each one's error compensated on the columns not yet quantised,
weighted by the inverse Hessian ``X^T X`` of the MatMul's inputs ``X``; here in act-order, with the
blocks' round-to-nearest scales) when calibration inputs are given, round-to-nearest otherwise. The
inputs come from the fp32 graph itself, run by onnxruntime on calibration texts (``calibration.py``);
Hessians above ``HESSIAN_BUDGET`` bytes (large models) fall back to round-to-nearest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pyserini_diffret.onnx_export import tied

BITS = {"int8w": 8, "int4w": 4}
BLOCK = 32
DAMP = 0.01  # GPTQ: added to the Hessian diagonal, relative to its mean
_GPTQ_CHUNK = 128  # GPTQ columns compensated one by one within a chunk, then chunk by chunk (a matrix product)
HESSIAN_BUDGET = 2 * 1024**3  # bytes of float64 Hessians GPTQ may hold; above: round to nearest
FLOAT16_TABLE_MIN = 1 << 16  # lookup tables with at least this many values are stored as float16

Log = Callable[[str], None]


# -- quantisation (numpy) ----------------------------------------------------------------------------------
def _scales(blocks: np.ndarray, bits: int) -> np.ndarray:
    """float16-representable symmetric scales, one per block (last axis): the signed extreme maps to -2^(bits-1)."""
    high, low = blocks.max(axis=-1), blocks.min(axis=-1)
    extreme = np.where(-low > high, low, high)
    scale = (extreme / -(1 << (bits - 1))).astype(np.float16).astype(np.float64)
    return np.where((scale == 0) | ~np.isfinite(scale), 1.0, scale)


def _round(values: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return np.clip(np.rint(values / scale), -half, half - 1)


def quantise_rows(rows: np.ndarray, bits: int, block: int = BLOCK, hessian: np.ndarray | None = None,
                  damp: float = DAMP) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``rows [R, K]`` in blocks of ``block`` values along K.

    Returns ``q`` (int8 ``[R, nb, block]``, values in ``[-2^(bits-1), 2^(bits-1) - 1]``, K zero-padded to
    ``nb * block``) and float16 ``scales [R, nb]``, with ``q * scales[..., None] ~= rows``. With a
    ``hessian [K, K]`` (``X^T X`` of the inputs that multiply the K axis) the rounding is GPTQ's, else
    round-to-nearest.
    """
    rows = np.asarray(rows, dtype=np.float64)
    count, width = rows.shape
    blocks = -(-width // block)
    padded = np.zeros((count, blocks * block))
    padded[:, :width] = rows
    if hessian is None:
        grouped = padded.reshape(count, blocks, block)
        scale = _scales(grouped, bits)
        q = _round(grouped, scale[..., None], bits)
        return q.astype(np.int8), scale.astype(np.float16)
    return _gptq(padded, hessian, width, bits, block, damp)


def _gptq(weights: np.ndarray, hessian: np.ndarray, width: int, bits: int, block: int, damp: float):
    """GPTQ with static block scales and act-order: the scales are the round-to-nearest ones of the original
    blocks, and columns are quantised in order of decreasing input energy (Hessian diagonal), each one's
    error compensated on the columns still to come. (On MiniLM, act-order took the slot error on held-out
    texts from ~1.05e-2 to ~0.9e-2 median.)
    """
    count, padded_width = weights.shape
    h = np.zeros((padded_width, padded_width))
    h[:width, :width] = hessian
    unused = np.diag(h) <= 0  # inputs never seen (and the padding): plain rounding, no compensation
    h[unused, :] = 0
    h[:, unused] = 0
    h[unused, unused] = 1
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    scales = _scales(weights.reshape(count, -1, block), bits)  # [R, nb]
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)]
    try:
        # Upper Cholesky factor of H^-1: row j holds the compensation of column j on the columns after it.
        upper = np.linalg.cholesky(np.linalg.inv(h)).T
    except np.linalg.LinAlgError:
        return quantise_rows(weights[:, :width], bits, block)
    w = weights[:, order]
    column_scales = np.repeat(scales, block, axis=1)[:, order]
    q = np.zeros_like(w)
    for start in range(0, padded_width, _GPTQ_CHUNK):
        stop = min(start + _GPTQ_CHUNK, padded_width)
        chunk = w[:, start:stop]  # a view: compensation within the chunk updates w
        errors = np.zeros((count, stop - start))
        for i in range(stop - start):
            j = start + i
            quantised = _round(chunk[:, i], column_scales[:, j], bits)
            q[:, j] = quantised
            errors[:, i] = (chunk[:, i] - quantised * column_scales[:, j]) / upper[j, j]
            chunk[:, i + 1:] -= np.outer(errors[:, i], upper[j, j + 1:stop])
        w[:, stop:] -= errors @ upper[start:stop, stop:]
    restored = np.empty_like(q)
    restored[:, order] = q
    return restored.reshape(count, -1, block).astype(np.int8), scales.astype(np.float16)


def dequantise_rows(q: np.ndarray, scales: np.ndarray, width: int) -> np.ndarray:
    """The float32 rows ``[R, width]`` that ``q``/``scales`` stand for (what the graph rebuilds)."""
    rows = q.astype(np.float32) * scales.astype(np.float32)[..., None]
    return rows.reshape(q.shape[0], -1)[:, :width]


def pack(q: np.ndarray, bits: int, axis: int = -1) -> np.ndarray:
    """Storage form of blocks whose values run along ``axis``: int8 as is; 4 bits as ``q + 8``, two per byte,
    byte j = value j | value j + block/2 << 4."""
    if bits == 8:
        return np.ascontiguousarray(q, dtype=np.int8)
    unsigned = np.moveaxis((q.astype(np.int16) + 8).astype(np.uint8), axis, -1)
    half = unsigned.shape[-1] // 2
    return np.ascontiguousarray(np.moveaxis(unsigned[..., :half] | (unsigned[..., half:] << 4), -1, axis))


# -- graph -------------------------------------------------------------------------------------------------
@dataclass
class WeightOnlyResult:
    """What the export record keeps (``ExportRecord.weight_only``)."""

    bits: int
    block_size: int = BLOCK
    rounding: str = "nearest"  # "gptq" with calibration inputs
    calibration: dict[str, Any] | None = None  # texts, batches, tokens, source
    matmul_weights: int = 0
    quantised_values: int = 0
    float16_tables: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits, "block_size": self.block_size,
            "scales": f"float16, symmetric, one per {self.block_size} weights along the input dimension",
            "rounding": self.rounding, "calibration": self.calibration,
            "compute": "float32: onnxruntime folds the dequantisation into float32 weights when it loads the graph",
            "matmul_weights": self.matmul_weights, "quantised_values": self.quantised_values,
            "float16_tables": list(self.float16_tables), "skipped": list(self.skipped), "notes": list(self.notes),
        }


def _float_matrix(tensor, graph_inputs: set[str], outputs: set[str]) -> bool:
    from onnx import TensorProto  # noqa: PLC0415

    return (tensor.data_type == TensorProto.FLOAT and len(tensor.dims) == 2 and tensor.name not in graph_inputs
            and tensor.name not in outputs and tensor.data_location != TensorProto.EXTERNAL)


def _consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            users.setdefault(name, []).append(node)
    return users


def find_matmul_weights(model, exclude: set[str] = frozenset()) -> dict[str, list[str]]:
    """``{weight: [input A of each MatMul reading it]}`` for the 2-D float initializers only MatMuls read (as B)."""
    graph = model.graph
    users = _consumers(graph)
    graph_inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    found = {}
    for tensor in graph.initializer:
        if tensor.name in exclude or not _float_matrix(tensor, graph_inputs, outputs):
            continue
        readers = users.get(tensor.name, [])
        if readers and all(n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] == tensor.name
                           and n.input[0] != tensor.name for n in readers):
            found[tensor.name] = [n.input[0] for n in readers]
    return found


def _lookup_tables(model, exclude: set[str]) -> list[str]:
    """Large float tables that only Gathers (axis 0) read as data: position embeddings, untied input embeddings."""
    graph = model.graph
    users = _consumers(graph)
    graph_inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    found = []
    for tensor in graph.initializer:
        if tensor.name in exclude or not _float_matrix(tensor, graph_inputs, outputs):
            continue
        if int(np.prod(tensor.dims)) < FLOAT16_TABLE_MIN:
            continue
        readers = users.get(tensor.name, [])
        if readers and all(n.op_type == "Gather" and n.input[0] == tensor.name and n.input[1] != tensor.name
                           and tied._attr(n, "axis", 0) == 0 for n in readers):
            found.append(tensor.name)
    return found


class _Rewriter:
    """Collects the initializers and nodes that replace float initializers; applies them in one pass.

    Constant subgraphs (rebuilding a weight from its blocks) go first in the graph; the nodes replacing a
    lookup go where the lookup was, so the order stays topological.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.initializers: list = []
        self.constant_nodes: list = []
        self.replacements: dict[str, list] = {}  # output of a replaced node -> the nodes that replace it
        self.removed: set[str] = set()
        self._target = self.constant_nodes

    def _constant(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper  # noqa: PLC0415

        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper  # noqa: PLC0415

        self._target.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def _values(self, stored: str, bits: int, tag: str, axis: int) -> str:
        """float32 integer values of ``stored`` blocks (4 bits: unpacked along ``axis``)."""
        from onnx import TensorProto  # noqa: PLC0415

        if bits == 8:
            return self._node("Cast", [stored], f"{tag}/values", to=TensorProto.FLOAT)
        mask = self._constant(np.array(15, np.uint8), f"{tag}/low_mask")
        low = self._node("BitwiseAnd", [stored, mask], f"{tag}/low")
        high = self._node("BitShift", [stored, self._constant(np.array(4, np.uint8), f"{tag}/shift")], f"{tag}/high",
                          direction="RIGHT")
        unsigned = self._node("Concat", [low, high], f"{tag}/unsigned", axis=axis)
        floats = self._node("Cast", [unsigned], f"{tag}/unsigned_float", to=TensorProto.FLOAT)
        return self._node("Sub", [floats, self._constant(np.array(8, np.float32), f"{tag}/offset")], f"{tag}/values")

    def _trim(self, matrix: str, width: int, full: int, axis: int, tag: str, out: str) -> str:
        if width == full:
            return matrix
        return self._node("Slice", [matrix, self._constant(np.array([0], np.int64), f"{tag}/start"),
                                    self._constant(np.array([width], np.int64), f"{tag}/stop"),
                                    self._constant(np.array([axis], np.int64), f"{tag}/axis")], out)

    def matmul_weight(self, name: str, q: np.ndarray, scales: np.ndarray, bits: int, width: int) -> None:
        """Replace MatMul weight ``name`` ``[K, N]`` by blocks ``[nb, block, N]`` (q: rows ``[N, nb, block]``)."""
        from onnx import TensorProto  # noqa: PLC0415

        tag = f"{name}/int{bits}"
        count, blocks, block = q.shape
        stored = self._constant(pack(q.transpose(1, 2, 0), bits, axis=1), f"{tag}/blocks")
        scale = self._constant(np.ascontiguousarray(scales.T[:, None, :]).astype(np.float16), f"{tag}/scales")
        values = self._values(stored, bits, tag, axis=1)
        scale = self._node("Cast", [scale], f"{tag}/scales_float", to=TensorProto.FLOAT)
        product = self._node("Mul", [values, scale], f"{tag}/dequantised")
        shape = self._constant(np.array([blocks * block, count], np.int64), f"{tag}/shape")
        full = blocks * block
        matrix = self._node("Reshape", [product, shape], name if width == full else f"{tag}/padded")
        self._trim(matrix, width, full, 0, tag, name)
        self.removed.add(name)

    def tied_table(self, name: str, q: np.ndarray, scales: np.ndarray, bits: int, width: int, gathers: list,
                   rebuild: bool = True) -> str:
        """Store table ``name`` ``[V, H]`` once as blocks ``[V, nb, block]``: the ``gathers`` dequantise the rows
        they read at run time; with ``rebuild``, ``name`` itself becomes a constant subgraph (what a
        whole-vocabulary LM head reads, folded at load). Returns the blocks' initializer name."""
        from onnx import TensorProto  # noqa: PLC0415

        tag = f"{name}/int{bits}"
        count, blocks, block = q.shape
        full = blocks * block
        stored = self._constant(pack(q, bits, axis=-1), f"{tag}/blocks")
        scale = self._constant(scales[..., None].astype(np.float16), f"{tag}/scales")
        scale = self._node("Cast", [scale], f"{tag}/scales_float", to=TensorProto.FLOAT)
        if rebuild:
            values = self._values(stored, bits, tag, axis=-1)
            product = self._node("Mul", [values, scale], f"{tag}/dequantised")
            shape = self._constant(np.array([count, full], np.int64), f"{tag}/shape")
            matrix = self._node("Reshape", [product, shape], name if width == full else f"{tag}/padded")
            self._trim(matrix, width, full, 1, tag, name)
        self.removed.add(name)
        row_width = self._constant(np.array([full], np.int64), f"{tag}/row_width")
        for number, gather in enumerate(gathers):
            lookup = f"{tag}/lookup{number or ''}"
            ids = gather.input[1]
            self._target = self.replacements.setdefault(gather.output[0], [])
            rows = self._node("Gather", [stored, ids], f"{lookup}/blocks", axis=0)
            row_scales = self._node("Gather", [scale, ids], f"{lookup}/scales", axis=0)
            values = self._values(rows, bits, lookup, axis=-1)
            product = self._node("Mul", [values, row_scales], f"{lookup}/dequantised")
            ids_shape = self._node("Shape", [ids], f"{lookup}/ids_shape")
            shape = self._node("Concat", [ids_shape, row_width], f"{lookup}/shape", axis=0)
            padded = self._node("Reshape", [product, shape], gather.output[0] if width == full else f"{lookup}/padded")
            self._trim(padded, width, full, -1, lookup, gather.output[0])
            self._target = self.constant_nodes
        return stored

    def float16(self, name: str, array: np.ndarray) -> None:
        from onnx import TensorProto  # noqa: PLC0415

        stored = self._constant(array.astype(np.float16), f"{name}/float16")
        self._node("Cast", [stored], name, to=TensorProto.FLOAT)
        self.removed.add(name)

    def transpose_of(self, source: str, name: str) -> None:
        self._node("Transpose", [source], name, perm=[1, 0])
        self.removed.add(name)

    def apply(self) -> None:
        graph = self.model.graph
        kept = [t for t in graph.initializer if t.name not in self.removed]
        del graph.initializer[:]
        graph.initializer.extend(kept + self.initializers)
        annotations = [v for v in graph.value_info if v.name not in self.removed]
        del graph.value_info[:]
        graph.value_info.extend(annotations)
        nodes = list(self.constant_nodes)  # they read initializers only
        for node in graph.node:
            replacement = self.replacements.get(node.output[0]) if node.output else None
            nodes.extend([node] if replacement is None else replacement)
        del graph.node[:]
        graph.node.extend(nodes)


def _array(tensor) -> np.ndarray:
    from onnx import numpy_helper  # noqa: PLC0415

    return numpy_helper.to_array(tensor).astype(np.float32, copy=False)


def quantise_weight_only(model, bits: int, hessians: dict[str, np.ndarray] | None = None,
                         log: Log | None = None) -> tuple[WeightOnlyResult, list[tied.SharedTable]]:
    """Rewrite ``model`` (fp32, in place): MatMul weights and tied tables to ``bits``-bit blocks, large lookup
    tables to float16. ``hessians``: ``{MatMul input name: X^T X}`` (``collect_hessians``) for GPTQ rounding.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    log = log or (lambda message: None)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    result = WeightOnlyResult(bits=bits, rounding="gptq" if hessians else "nearest")
    rewrite = _Rewriter(model)
    shared: list[tied.SharedTable] = []
    handled: set[str] = set()

    for index, (table_name, gathers, heads, row_reads) in enumerate(tied.find_tied_tables(model)):
        table = _array(initializers[table_name])
        q, scales = quantise_rows(table, bits)
        stored = rewrite.tied_table(table_name, q, scales, bits, table.shape[1], gathers, rebuild=bool(heads))
        info = tied.SharedTable(table=stored, shape=tuple(table.shape), dtype=f"int{bits}",
                                scales=f"float16 per {BLOCK} values of a row",
                                embedding_lookups=len(gathers) - len(row_reads), head_row_reads=len(row_reads),
                                replaced=[table_name])
        for matmul, source in heads:
            info.lm_heads += 1
            if getattr(source, "op_type", None) != "Transpose" and source.name not in handled:
                rewrite.transpose_of(table_name, source.name)  # the exporter's folded E^T copy
                info.replaced.append(source.name)
                handled.add(source.name)
        handled.add(table_name)
        result.quantised_values += table.size
        shared.append(info)
        log(f"vocabulary table {'x'.join(map(str, table.shape))} stored once as int{bits} (float16 scales per "
            f"{BLOCK} values), read by {info.embedding_lookups} embedding lookup(s), {info.head_row_reads} LM-head "
            f"row read(s) and {info.lm_heads} whole-vocabulary LM head(s)")

    weights = find_matmul_weights(model, exclude=handled)
    for number, (name, inputs) in enumerate(weights.items(), 1):
        matrix = _array(initializers[name])
        if not np.isfinite(matrix).all():
            result.skipped.append(name)
            continue
        hessian = None
        if hessians:
            parts = [hessians[i] for i in inputs if i in hessians]
            hessian = sum(parts) if len(parts) == len(inputs) else None
        q, scales = quantise_rows(matrix.T, bits, hessian=hessian)
        rewrite.matmul_weight(name, q, scales, bits, matrix.shape[0])
        result.matmul_weights += 1
        result.quantised_values += matrix.size
        if number % 25 == 0:
            log(f"  {number}/{len(weights)} MatMul weights quantised")
    if result.skipped:
        result.notes.append(f"{len(result.skipped)} MatMul weight(s) with non-finite values left in float32")
    for name in _lookup_tables(model, exclude=handled):
        rewrite.float16(name, _array(initializers[name]))
        result.float16_tables.append(name)
    rewrite.apply()
    return result, shared


# -- calibration -------------------------------------------------------------------------------------------
def hessian_bytes(model, inputs: Sequence[str]) -> int:
    """Bytes of the float64 Hessians for the MatMul inputs ``inputs`` (their widths from the weights)."""
    initializers = {t.name: t for t in model.graph.initializer}
    widths = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[0] in inputs and node.input[1] in initializers:
            widths[node.input[0]] = int(initializers[node.input[1]].dims[0])
    return sum(8 * k * k for k in widths.values())


def collect_hessians(session_source, inputs: Sequence[str], feeds: Sequence[dict[str, np.ndarray]],
                     threads: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """``X^T X`` of each tensor in ``inputs`` over the calibration ``feeds`` (padding excluded).

    ``session_source``: a model (bytes or path) whose graph outputs include ``inputs``. Returns the
    Hessians and the number of real tokens seen.
    """
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(session_source, options, providers=["CPUExecutionProvider"])
    accepted = {i.name for i in session.get_inputs()}
    hessians: dict[str, np.ndarray] = {}
    tokens = 0
    for feed in feeds:
        mask = feed["attention_mask"].astype(bool)
        tokens += int(mask.sum())
        outputs = session.run(list(inputs), {k: v for k, v in feed.items() if k in accepted})
        for name, x in zip(inputs, outputs):
            if x.ndim >= 3 and x.shape[:2] == mask.shape:
                rows = x[mask]
            elif x.ndim == 2 and x.shape[0] == mask.size:
                rows = x[mask.reshape(-1)]
            else:  # e.g. the LM head's input: the K slot states only
                rows = x.reshape(-1, x.shape[-1])
            rows = rows.astype(np.float64)
            if name in hessians:
                hessians[name] += rows.T @ rows
            else:
                hessians[name] = rows.T @ rows
    return hessians, tokens
