"""int8 exports of vocabulary tables read by rows: tied input embeddings, and the LM head read at the content ids.

At search time the graph reads the LM head at each text's own vocabulary ids: its weight ``W`` ``[V, H]`` is
a ``Gather`` table, as the word embeddings are; for tied models they are one table ``E``, read by two
Gathers (the input ids and the content ids). Dynamic quantisation quantises MatMul weights only, and would
leave such a table in fp32 (47 MB of a 68 MB MiniLM-sized graph). ``share_tied_embeddings`` rewrites the fp32
graph, before dynamic quantisation, so that the table is stored once, int8, with one symmetric scale per
vocabulary row (``s = max|row| / 127``, zero point 0):

- every row read (embedding lookup, LM-head rows): ``Gather`` the int8 rows and their scales, ``Cast`` to
  float, ``Mul``. The LM head's ``K x A`` product with the rows it read stays in float32: it is tiny.
- graphs with the zero-shot stop-token rule also run the LM head over the whole vocabulary. The exporter
  constant-folds its weight to ``E^T`` ``[H, V]``; that ``MatMul`` becomes the pattern dynamic quantisation
  writes for every other MatMul (``DynamicQuantizeLinear`` of the input, ``MatMulInteger``, ``Cast``,
  ``Mul`` by input scale x row scales), its weight ``Transpose(int8 table)``. onnxruntime constant-folds
  that Transpose when it loads the graph and fuses the pattern into ``DynamicQuantizeMatMul`` with a
  prepacked weight, so that head runs exactly as fast as a separately quantised one (measured on a
  MiniLM-sized model, 1 thread: a ``QGemm`` reading the table with ``transB`` was ~15-20% slower on the head
  alone, dequantise-then-MatMul 12-20% slower end to end). The per-row scales are its per-output-column
  scales, so its int8 weights are the ones dynamic quantisation would have written.

Tables are found in the graph, for every backbone: a 2-D float initializer read only by ``Gather`` (axis
0) and, possibly, as a transposed ``MatMul`` weight (an initializer equal to ``E^T``, compared value for
value, or ``Transpose(E)``), of which at least one ``Gather`` reads ids computed from the graph input
``content_ids`` or at least one MatMul reads it transposed. A table or weight that anything else reads is
left alone, and an untied input embedding alone is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

QMAX = 127  # symmetric int8: [-127, 127]
_COMPARE_ROWS = 4096  # rows compared at a time (keeps the comparison of large tables cheap in memory)


@dataclass
class SharedTable:
    """One tied table stored once, quantised: what the export record keeps about it."""

    table: str  # the int8 table's initializer name
    shape: tuple[int, int]  # [V, H]
    embedding_lookups: int = 0  # Gather nodes rewritten that read input ids
    lm_heads: int = 0  # MatMul nodes rewritten (the whole-vocabulary LM head of the stop-token rule)
    head_row_reads: int = 0  # Gather nodes rewritten that read the LM head at the content ids
    replaced: list[str] = field(default_factory=list)  # the fp32 initializers it replaces
    dtype: str = "int8"  # int8, or int4 (weight_only.py)
    scales: str = "per-row symmetric"

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "shape": list(self.shape), "dtype": self.dtype, "scales": self.scales,
                "embedding_lookups": self.embedding_lookups, "lm_heads": self.lm_heads,
                "head_row_reads": self.head_row_reads,
                "replaced": list(self.replaced)}


def quantise_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and float32 per-row scales with ``q * s ~= table`` (all-zero rows get scale 1)."""
    table = np.asarray(table, dtype=np.float32)
    peak = np.abs(table).max(axis=1)
    scale = np.where(peak > 0, peak / QMAX, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(table / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return quantised, scale


def _attr(node, name: str, default: Any) -> Any:
    from onnx import helper  # noqa: PLC0415

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _array(tensor) -> np.ndarray:
    """A float32 initializer as an array: a view of its raw bytes where it has them (no copy)."""
    from onnx import numpy_helper  # noqa: PLC0415

    if tensor.raw_data:
        return np.frombuffer(tensor.raw_data, dtype="<f4").reshape(tuple(tensor.dims))
    return numpy_helper.to_array(tensor)


def _is_transpose(weight: np.ndarray, table: np.ndarray) -> bool:
    """``weight == table.T``, value for value; a sample of rows first, then block by block."""
    if weight.shape != table.shape[::-1]:
        return False
    if not np.array_equal(weight[:, :8], table[:8].T):
        return False
    return all(np.array_equal(weight[:, start:start + _COMPARE_ROWS], table[start:start + _COMPARE_ROWS].T)
               for start in range(0, table.shape[0], _COMPARE_ROWS))


def _weight_matmuls(name: str, consumers: dict[str, list], outputs: set[str]) -> list | None:
    """The MatMuls reading ``name`` as their weight (input B), or None when anything else reads it."""
    users = consumers.get(name, [])
    if name in outputs or not users:
        return None
    if any(u.op_type != "MatMul" or len(u.input) != 2 or u.input[1] != name or u.input[0] == name for u in users):
        return None
    return users


CONTENT_IDS = "content_ids"  # the graph input whose ids read the LM head by rows
_ANCESTOR_DEPTH = 32  # nodes walked back from a Gather's ids to find that input


def _reads_content_ids(ids: str, producers: dict[str, object]) -> bool:
    """Whether the tensor ``ids`` is computed from the graph input ``content_ids`` (a few nodes up)."""
    frontier, seen = [ids], set()
    while frontier and len(seen) < _ANCESTOR_DEPTH:
        name = frontier.pop()
        if name == CONTENT_IDS:
            return True
        if name in seen or name not in producers:
            continue
        seen.add(name)
        frontier.extend(i for i in producers[name].input if i)
    return False


def find_tied_tables(model) -> list[tuple[str, list, list, list]]:
    """``(table, gathers, heads, row_reads)`` per vocabulary table of ``model`` read by rows (module docstring).

    ``gathers``: the Gather nodes reading the table; ``row_reads``: those of them whose ids come from
    ``content_ids``; ``heads``: ``(matmul, source)`` pairs, ``source`` being the initializer equal to the
    table transposed or the ``Transpose`` node reading the table.
    """
    from onnx import TensorProto  # noqa: PLC0415

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    producers: dict[str, object] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    outputs = {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}  # an input of the same name overrides an initializer

    def matrix(name: str):
        tensor = initializers.get(name)
        if tensor is None or name in graph_inputs or name in outputs or tensor.data_type != TensorProto.FLOAT:
            return None
        if len(tensor.dims) != 2 or tensor.data_location == TensorProto.EXTERNAL:
            return None
        return tensor

    found = []
    for table_name, users in consumers.items():
        table = matrix(table_name)
        if table is None:
            continue
        gathers = [n for n in users if n.op_type == "Gather" and n.input[0] == table_name and n.input[1] != table_name
                   and _attr(n, "axis", 0) == 0]
        transposes = [n for n in users if n.op_type == "Transpose" and list(_attr(n, "perm", [1, 0])) == [1, 0]]
        if not gathers or len(gathers) + len(transposes) != len(users):
            continue
        heads = _transposed_heads(table, transposes, initializers, consumers, outputs, matrix)
        if heads is None:
            continue
        row_reads = [g for g in gathers if _reads_content_ids(g.input[1], producers)]
        if heads or row_reads:
            found.append((table_name, gathers, heads, row_reads))
    return found


def _transposed_heads(table, transposes: list, initializers: dict, consumers: dict, outputs: set, matrix) -> list | None:
    """The MatMuls reading ``table`` transposed, as ``(matmul, source)``; None when a Transpose of it feeds
    anything else."""
    heads = []
    for transpose in transposes:  # Transpose(E) -> MatMul
        matmuls = _weight_matmuls(transpose.output[0], consumers, outputs)
        if matmuls is None:
            return None
        heads.extend((m, transpose) for m in matmuls)
    if transposes:
        return heads
    vocab, hidden = table.dims
    values = None
    for name, tensor in initializers.items():  # constant-folded transposed copies
        if list(tensor.dims) != [hidden, vocab] or matrix(name) is None:
            continue
        matmuls = _weight_matmuls(name, consumers, outputs)
        if matmuls is None:
            continue
        values = _array(table) if values is None else values
        if _is_transpose(_array(tensor), values):
            heads.extend((m, tensor) for m in matmuls)
    return heads


def share_tied_embeddings(model) -> list[SharedTable]:
    """Store each tied table of ``model`` (fp32, before dynamic quantisation) once, as int8; in place.

    Returns one ``SharedTable`` per table rewritten (an empty list for untied models).
    """
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    graph = model.graph
    results = []
    for index, (table_name, gathers, heads, row_reads) in enumerate(find_tied_tables(model)):
        table = next(t for t in graph.initializer if t.name == table_name)
        quantised, scale = quantise_rows(_array(table))
        base = f"tied_embedding{index or ''}"
        names = {key: f"{base}/{key}" for key in ("int8", "row_scale", "zero_point", "transposed", "last_axis")}
        info = SharedTable(table=names["int8"], shape=(int(table.dims[0]), int(table.dims[1])))
        # Nodes are known by their first output (unique in a graph); new nodes go in before the node they
        # replace, which keeps the order topological.
        position = {node.output[0]: i for i, node in enumerate(graph.node) if node.output}
        before: dict[int, list] = {}
        dropped: set[str] = set()

        for n, gather in enumerate(gathers):
            tag = f"{base}/lookup{n or ''}"
            ids = gather.input[1]
            before.setdefault(position[gather.output[0]], []).extend([
                helper.make_node("Gather", [names["int8"], ids], [f"{tag}/rows"], name=f"{tag}/Gather", axis=0),
                helper.make_node("Gather", [names["row_scale"], ids], [f"{tag}/scales"], name=f"{tag}/GatherScales",
                                 axis=0),
                helper.make_node("Cast", [f"{tag}/rows"], [f"{tag}/rows_float"], name=f"{tag}/Cast",
                                 to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", [f"{tag}/scales", names["last_axis"]], [f"{tag}/scales_column"],
                                 name=f"{tag}/Unsqueeze"),
                helper.make_node("Mul", [f"{tag}/rows_float", f"{tag}/scales_column"], [gather.output[0]],
                                 name=f"{tag}/Dequantize"),
            ])
            dropped.add(gather.output[0])
        info.head_row_reads = len(row_reads)
        info.embedding_lookups = len(gathers) - len(row_reads)

        if heads:
            first_head = min(position[m.output[0]] for m, _ in heads)
            before.setdefault(first_head, []).append(helper.make_node(
                "Transpose", [names["int8"]], [names["transposed"]], name=f"{base}/Transpose", perm=[1, 0]))
        for n, (matmul, source) in enumerate(heads):
            tag = f"{base}/head{n or ''}"
            x = matmul.input[0]
            before.setdefault(position[matmul.output[0]], []).extend([
                helper.make_node("DynamicQuantizeLinear", [x], [f"{tag}/x_quantised", f"{tag}/x_scale", f"{tag}/x_zero"],
                                 name=f"{tag}/QuantizeInput"),
                helper.make_node("MatMulInteger", [f"{tag}/x_quantised", names["transposed"], f"{tag}/x_zero",
                                                   names["zero_point"]], [f"{tag}/product"], name=f"{tag}/MatMulInteger"),
                helper.make_node("Cast", [f"{tag}/product"], [f"{tag}/product_float"], name=f"{tag}/Cast",
                                 to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{tag}/x_scale", names["row_scale"]], [f"{tag}/scales"], name=f"{tag}/Scales"),
                helper.make_node("Mul", [f"{tag}/product_float", f"{tag}/scales"], [matmul.output[0]],
                                 name=f"{tag}/Dequantize"),
            ])
            dropped.add(matmul.output[0])
            if getattr(source, "op_type", None) == "Transpose":
                dropped.add(source.output[0])
            elif source.name not in info.replaced:
                info.replaced.append(source.name)
            info.lm_heads += 1
        info.replaced.insert(0, table_name)

        nodes = []
        for i, node in enumerate(graph.node):
            nodes.extend(before.get(i, []))
            if not node.output or node.output[0] not in dropped:
                nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
        replaced = set(info.replaced)
        kept = [t for t in graph.initializer if t.name not in replaced]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        annotations = [v for v in graph.value_info if v.name not in replaced]
        del graph.value_info[:]
        graph.value_info.extend(annotations)
        graph.initializer.extend([
            numpy_helper.from_array(quantised, names["int8"]),
            numpy_helper.from_array(scale, names["row_scale"]),
            numpy_helper.from_array(np.array([-1], np.int64), names["last_axis"]),
        ])
        if heads:
            graph.initializer.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), names["zero_point"]))
        results.append(info)
    return results
