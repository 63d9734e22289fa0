"""int8 exports store a tied input-embedding / LM-head table once, as int8 (onnx_export/tied.py)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyserini_diffret import load_model
from pyserini_diffret.core.config import CONFIG_NAME
from pyserini_diffret.onnx_export import compare_models, export_model
from pyserini_diffret.onnx_export import tied
from pyserini_diffret.core.record import GRAPH_NAME, RECORD_KEY


def _record(folder) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())["extra"][RECORD_KEY]


def _tables(folder, vocab: int, hidden: int) -> list[tuple[str, int]]:
    """(name, data type) of the initializers holding vocab x hidden values (either orientation)."""
    graph = onnx.load(str(folder / GRAPH_NAME)).graph
    return [(t.name, t.data_type) for t in graph.initializer if sorted(t.dims) == sorted([vocab, hidden])]


def test_int8_export_stores_a_tied_table_once(tiny_model_dirs, tiny_models, tmp_path, monkeypatch):
    reference = tiny_models["mlm"]
    bert = reference.runtime.backbone.model
    assert bert.get_input_embeddings().weight.data_ptr() == bert.get_output_embeddings().weight.data_ptr()
    vocab, hidden = bert.get_input_embeddings().weight.shape

    out = export_model(tiny_model_dirs["mlm"], tmp_path / "int8", backbone="mlm", precision="int8")
    assert _tables(out, vocab, hidden) == [("tied_embedding/int8", TensorProto.INT8)]
    [shared] = _record(out)["shared_embeddings"]
    assert shared["shape"] == [vocab, hidden] and shared["dtype"] == "int8"
    assert (shared["embedding_lookups"], shared["head_row_reads"], shared["lm_heads"]) == (1, 1, 0)

    report = compare_models(load_model(out), reference, precision="int8")
    assert report.passed, report.format()
    # int8-level agreement with torch fp32 (measured ~4e-3 on this model).
    assert report.worst("slot_rel_error") < 2e-2, report.format()
    assert report.worst("term_abs_error") < 2e-2, report.format()

    # Without the rewrite, dynamic quantisation (MatMul weights only) leaves the table in fp32: 3 bytes a value more.
    monkeypatch.setattr(tied, "share_tied_embeddings", lambda model: [])
    separate = export_model(tiny_model_dirs["mlm"], tmp_path / "separate", backbone="mlm", precision="int8")
    assert [t for _, t in _tables(separate, vocab, hidden)] == [TensorProto.FLOAT]
    saved = (separate / GRAPH_NAME).stat().st_size - (out / GRAPH_NAME).stat().st_size
    assert saved > 2.5 * vocab * hidden


def test_untied_head_is_stored_as_int8_rows_and_float_exports_are_unchanged(tiny_model_dirs, tiny_models, onnx_dirs,
                                                                            tmp_path):
    dream = tiny_models["dream"].runtime.backbone.model
    assert dream.get_input_embeddings().weight.data_ptr() != dream.get_output_embeddings().weight.data_ptr()
    vocab, hidden = dream.get_input_embeddings().weight.shape
    out = export_model(tiny_model_dirs["dream"], tmp_path / "int8", backbone="dream", precision="int8")
    # The LM head, read by rows at the content ids and, for the zero-shot stop-token rule, as a whole.
    [head] = _record(out)["shared_embeddings"]
    assert (head["embedding_lookups"], head["head_row_reads"], head["lm_heads"]) == (0, 1, 1)
    types = sorted(t for _, t in _tables(out, vocab, hidden))
    assert types == sorted([TensorProto.INT8, TensorProto.FLOAT])  # the head quantised, the lookup table as it was
    # fp32 exports keep their fp32 tables, and say nothing about sharing.
    assert _record(onnx_dirs["mlm"])["shared_embeddings"] == []


# -- detection and rewrite on hand-made graphs -------------------------------------------------------------
V, H = 50, 8


def _graph(table: np.ndarray, weight: np.ndarray | None, extra_reader: bool = False):
    """ids -> Gather(table) -> mean over the sequence -> + x -> MatMul(weight, or Transpose(table))."""
    inits = [numpy_helper.from_array(table, "E"), numpy_helper.from_array(np.array([1], np.int64), "axis")]
    nodes = [helper.make_node("Gather", ["E", "ids"], ["emb"]),
             helper.make_node("ReduceMean", ["emb", "axis"], ["pooled"]),
             helper.make_node("Add", ["x", "pooled"], ["h"])]
    if weight is None:
        nodes.append(helper.make_node("Transpose", ["E"], ["ET"], perm=[1, 0]))
    else:
        inits.append(numpy_helper.from_array(weight, "ET"))
    nodes.append(helper.make_node("MatMul", ["h", "ET"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1, V])]
    if extra_reader:
        nodes.append(helper.make_node("ReduceSum", ["E"], ["total"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "l"]),
                                           helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1, H])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("form", ["initializer", "transpose"])
def test_rewrite_matches_the_float_graph(form):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((V, H)).astype(np.float32)
    table[3] = 0.0  # an all-zero row quantises without dividing by zero
    model = _graph(table, table.T.copy() if form == "initializer" else None)
    [shared] = tied.share_tied_embeddings(model)
    assert (shared.embedding_lookups, shared.lm_heads) == (1, 1)
    onnx.checker.check_model(model)
    names = {t.name for t in model.graph.initializer}
    assert "E" not in names and "ET" not in names
    ids = rng.integers(0, V, (3, 5))
    ids[0, 0] = 3
    x = rng.standard_normal((3, 1, H)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["y"], {"ids": ids, "x": x})[0]
    expected = (x + table[ids].mean(1, keepdims=True)) @ table.T
    assert np.linalg.norm(y - expected) / np.linalg.norm(expected) < 2e-2


def test_only_true_ties_are_shared():
    table = np.random.default_rng(1).standard_normal((V, H)).astype(np.float32)
    near = table.T.copy()
    near[2, 7] += 1e-6
    assert tied.find_tied_tables(_graph(table, near)) == []  # not the same weight
    assert tied.find_tied_tables(_graph(table, table.T.copy(), extra_reader=True)) == []  # the table has other uses
    model = _graph(table, near)
    before = model.SerializeToString()
    assert tied.share_tied_embeddings(model) == [] and model.SerializeToString() == before
