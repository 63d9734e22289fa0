"""int8 exports of models whose input embedding and LM head share one weight (tied embeddings).

The traced graph holds a tied table twice: as the word-embedding ``Gather`` table ``E`` ``[V, H]`` and,
constant-folded by the exporter, as the LM head's ``MatMul`` weight ``E^T`` ``[H, V]``. Dynamic
quantisation alone would leave ``E`` in fp32 (it quantises MatMuls only) and give the head its own int8
copy: for a MiniLM-sized model that is 47 MB + 11.7 MB of a 68 MB graph. ``share_tied_embeddings``
rewrites the fp32 graph, before dynamic quantisation, so that the table is stored once, int8, with one
symmetric scale per vocabulary row (``s = max|row| / 127``, zero point 0):

- embedding lookup: ``Gather`` the int8 rows and their scales, ``Cast`` to float, ``Mul``;
- LM head: the pattern dynamic quantisation writes for every other MatMul (``DynamicQuantizeLinear`` of
  the input, ``MatMulInteger``, ``Cast``, ``Mul`` by input scale x row scales), its weight
  ``Transpose(int8 table)``. onnxruntime constant-folds that Transpose when it loads the graph and fuses
  the pattern into ``DynamicQuantizeMatMul`` with a prepacked weight, so the head runs exactly as fast as
  a separately quantised one (measured on a MiniLM-sized model, 1 thread: a ``QGemm`` reading the table
  with ``transB`` was ~15-20% slower on the head alone, dequantise-then-MatMul 12-20% slower end to end).
  The per-row scales are the head's per-output-column scales, so its int8 weights are the ones dynamic
  quantisation would have written; the lookup gains int8 rounding (<= half a row step) on its input.

Tying is detected in the graph, for every backbone: a ``Gather`` (axis 0) whose table is a 2-D float
initializer ``E``, and ``MatMul`` weights that are ``E`` transposed: an initializer equal to ``E^T``
(compared value for value), or ``Transpose(E)``. A table or weight that anything else reads is left
alone, and untied models are unchanged.
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
    embedding_lookups: int = 0  # Gather nodes rewritten
    lm_heads: int = 0  # MatMul nodes rewritten
    replaced: list[str] = field(default_factory=list)  # the fp32 initializers it replaces
    dtype: str = "int8"  # int8, or int4 (weight_only.py)
    scales: str = "per-row symmetric"

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "shape": list(self.shape), "dtype": self.dtype, "scales": self.scales,
                "embedding_lookups": self.embedding_lookups, "lm_heads": self.lm_heads,
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


def find_tied_tables(model) -> list[tuple[str, list, list]]:
    """``(table, gathers, heads)`` per tied embedding table of ``model``.

    ``gathers``: the Gather nodes reading the table; ``heads``: ``(matmul, source)`` pairs, ``source``
    being the initializer equal to the table transposed or the ``Transpose`` node reading the table.
    """
    from onnx import TensorProto  # noqa: PLC0415

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            consumers.setdefault(name, []).append(node)
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
        heads = []
        for transpose in transposes:  # Transpose(E) -> MatMul
            matmuls = _weight_matmuls(transpose.output[0], consumers, outputs)
            if matmuls is None:
                break
            heads.extend((m, transpose) for m in matmuls)
        else:
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
            if heads:
                found.append((table_name, gathers, heads))
    return found


def share_tied_embeddings(model) -> list[SharedTable]:
    """Store each tied table of ``model`` (fp32, before dynamic quantisation) once, as int8; in place.

    Returns one ``SharedTable`` per table rewritten (an empty list for untied models).
    """
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    graph = model.graph
    results = []
    for index, (table_name, gathers, heads) in enumerate(find_tied_tables(model)):
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
            info.embedding_lookups += 1

        first_head = min(position[m.output[0]] for m, _ in heads)
        before.setdefault(first_head, []).append(
            helper.make_node("Transpose", [names["int8"]], [names["transposed"]], name=f"{base}/Transpose", perm=[1, 0]))
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
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), names["zero_point"]),
            numpy_helper.from_array(np.array([-1], np.int64), names["last_axis"]),
        ])
        results.append(info)
    return results
