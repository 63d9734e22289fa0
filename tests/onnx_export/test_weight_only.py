"""Weight-only exports (int8w, int4w): 8/4-bit weight blocks, float32 compute (onnx_export/weight_only.py)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyserini_diffret import load_model
from pyserini_diffret.core.config import CONFIG_NAME
from pyserini_diffret.onnx_export import ExportError, compare_models, export_model
from pyserini_diffret.onnx_export import weight_only
from pyserini_diffret.onnx_export.__main__ import main as cli
from pyserini_diffret.core.record import GRAPH_NAME, RECORD_KEY


def _record(folder) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())["extra"][RECORD_KEY]


def _optimised(folder, tmp_path):
    """The graph as onnxruntime runs it (after its load-time optimisations, constant folding included)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(folder / GRAPH_NAME), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath)


def _float_weights(model) -> list[str]:
    """2-D float initializers other than the small position and token-type tables (float16 from 65,536 values)."""
    small = ("position_embeddings.weight", "token_type_embeddings.weight")
    return [t.name for t in model.graph.initializer
            if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT and not t.name.endswith(small)]


def test_int8w_export(tiny_model_dirs, tiny_models, tmp_path):
    reference = tiny_models["mlm"]
    vocab, hidden = reference.runtime.backbone.model.get_input_embeddings().weight.shape
    out = export_model(tiny_model_dirs["mlm"], tmp_path / "int8w", backbone="mlm", precision="int8w")
    model = onnx.load(str(out / GRAPH_NAME))

    # Every MatMul weight and the tied table are int8 blocks; the table is stored once.
    assert _float_weights(model) == []
    tables = [(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer if np.prod(t.dims) == vocab * hidden]
    assert len(tables) == 1 and tables[0][1] == TensorProto.INT8 and tables[0][2] == [vocab, hidden // 32, 32]
    initializers = {t.name for t in model.graph.initializer}
    assert not any(n.op_type == "MatMul" and n.input[1] in initializers for n in model.graph.node)

    record = _record(out)
    scheme = record["weight_only"]
    assert record["precision"] == "int8w" and scheme["bits"] == 8 and scheme["block_size"] == 32
    assert scheme["rounding"] == "gptq" and scheme["calibration"]["tokens"] > 1000
    assert scheme["matmul_weights"] == sum(t.name.endswith("/int8/blocks") for t in model.graph.initializer) - 1 > 0
    [shared] = record["shared_embeddings"]
    assert shared["dtype"] == "int8" and shared["shape"] == [vocab, hidden]
    assert (shared["embedding_lookups"], shared["head_row_reads"], shared["lm_heads"]) == (1, 1, 0)

    # onnxruntime folds the dequantisation when it loads the graph: float32 MatMul weights; only the
    # table's int8 blocks are left, for the lookup, which dequantises the rows it gathers.
    folded = _optimised(out, tmp_path)
    int8 = [t for t in folded.graph.initializer if t.data_type == TensorProto.INT8]
    assert [list(t.dims) for t in int8] == [[vocab, hidden // 32, 32]]
    assert {n.op_type for n in folded.graph.node if int8[0].name in n.input} == {"Gather"}
    assert sum(t.data_type == TensorProto.FLOAT and len(t.dims) == 2 for t in folded.graph.initializer) >= 13

    report = compare_models(load_model(out), reference, precision="int8w")
    assert report.passed, report.format()
    assert report.worst("slot_rel_error") < 1e-2, report.format()  # measured 3e-3 on this model
    assert report.worst("term_abs_error") < 2e-2, report.format()


def test_int4w_export_external_data_and_given_texts(tiny_model_dirs, tiny_models, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("Bone fractures heal in weeks.\n\nVitamin D helps.\nShock waves heat the wing surface.\n")
    out = export_model(tiny_model_dirs["mlm"], tmp_path / "int4w", backbone="mlm", precision="int4w",
                       calibration=texts, external_data=True)
    assert (out / "model.onnx.data").is_file()
    scheme = _record(out)["weight_only"]
    assert scheme["bits"] == 4 and scheme["rounding"] == "gptq" and scheme["calibration"]["source"] == "given"
    assert scheme["calibration"]["texts"] == 6  # three texts, each as a query and as a passage
    model = onnx.load(str(out / GRAPH_NAME))
    assert _float_weights(model) == []
    packed = {t.name: t for t in model.graph.initializer if t.name.endswith("/int4/blocks")}
    assert len(packed) > 10 and all(t.data_type == TensorProto.UINT8 for t in packed.values())
    [table] = [t for name, t in packed.items() if "word_embeddings" in name]
    assert table.dims[1:] == [1, 16]  # [V, H/32, 16]: two values a byte, blocks along the row
    assert all(t.dims[1] == 16 for t in packed.values() if t is not table)  # [K/32, 16, N]
    report = compare_models(load_model(out), tiny_models["mlm"], precision="int4w")
    assert report.passed and report.limits["slot_rel"] is None
    assert report.worst("slot_rel_error") < 0.1, report.format()  # 4 bits: coarse, but not broken


def test_round_to_nearest_and_cli(tiny_model_dirs, tmp_path, capsys):
    code = cli(["--model", str(tiny_model_dirs["mlm"]), "--output", str(tmp_path / "rtn"), "--backbone", "mlm",
                "--precision", "int8w", "--calibration", "none", "--verify"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "verification (int8w) against torch: PASSED" in stdout and "rounded to nearest" in stdout
    scheme = _record(tmp_path / "rtn")["weight_only"]
    assert scheme["rounding"] == "nearest" and scheme["calibration"] is None
    code = cli(["--model", str(tiny_model_dirs["mlm"]), "--output", str(tmp_path / "x"), "--backbone", "mlm",
                "--calibration", "none"])
    assert code == 2 and "weight-only precisions" in capsys.readouterr().err
    with pytest.raises(ExportError, match="is not a file"):
        export_model(tiny_model_dirs["mlm"], tmp_path / "y", backbone="mlm", precision="int8w",
                     calibration=tmp_path / "missing.txt")


# -- quantisation and graph rewrite on small arrays and hand-made graphs ------------------------------------
@pytest.mark.parametrize("bits", [8, 4])
def test_round_to_nearest_blocks(bits):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((5, 70)).astype(np.float32)  # 70: the last block is padded
    rows[1, :32] = 0.0  # an all-zero block
    rows[2, 40] = 50.0  # an outlier widens its block only
    q, scales = weight_only.quantise_rows(rows, bits)
    assert q.shape == (5, 3, 32) and q.dtype == np.int8 and scales.dtype == np.float16
    half = 1 << (bits - 1)
    assert q.min() >= -half and q.max() <= half - 1
    restored = weight_only.dequantise_rows(q, scales, 70)
    step = np.abs(np.repeat(scales.astype(np.float32), 32, axis=1)[:, :70])  # scales carry a sign
    assert np.all(np.abs(restored - rows) <= step * 1.0001)  # <= one step (half a step but at the clipped end)
    assert np.abs(restored - rows).mean() < 0.3 * step.mean()
    assert np.all(restored[1, :32] == 0) and np.all(q[:, 2, 6:] == 0)  # zero block, zero padding
    assert np.abs(scales[2, 1]) > 10 * np.abs(scales[2, 0])


def test_gptq_lowers_the_output_error():
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((64, 64)) * 0.9 ** np.arange(64)[:, None]
    x = rng.standard_normal((2000, 64)) @ mixing  # correlated inputs of decaying variance, as in real activations
    w = rng.standard_normal((64, 48)).astype(np.float32)

    def output_error(hessian):
        q, scales = weight_only.quantise_rows(w.T, 4, hessian=hessian)
        restored = weight_only.dequantise_rows(q, scales, 64).T
        return np.linalg.norm(x @ (restored - w)) / np.linalg.norm(x @ w)

    nearest, gptq = output_error(None), output_error(x.T @ x)
    assert gptq < 0.5 * nearest, (gptq, nearest)  # 0.034 vs 0.090


def _matmul_graph(weight: np.ndarray):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", weight.shape[1]])],
        [numpy_helper.from_array(weight, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("bits", [8, 4])
def test_graph_rebuilds_the_quantised_weight_exactly(bits):
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((40, 24)).astype(np.float32)  # K = 40: padded to 64, sliced back
    x = rng.standard_normal((3, 40)).astype(np.float32)
    model = _matmul_graph(weight)
    hessians = {"x": (x.T @ x).astype(np.float64)}
    result, shared = weight_only.quantise_weight_only(model, bits, hessians)
    assert (result.matmul_weights, result.quantised_values, shared) == (1, 40 * 24, [])
    onnx.checker.check_model(model)
    assert "W" not in {t.name for t in model.graph.initializer}
    q, scales = weight_only.quantise_rows(weight.T, bits, hessian=hessians["x"])
    expected = x @ weight_only.dequantise_rows(q, scales, 40).T
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert np.linalg.norm(y - x @ weight) / np.linalg.norm(x @ weight) < (0.02 if bits == 8 else 0.3)


@pytest.mark.parametrize("form", ["initializer", "transpose"])
def test_tied_table_is_stored_once(form):
    from tests.onnx_export.test_tied import H, V, _graph

    rng = np.random.default_rng(3)
    table = rng.standard_normal((V, H)).astype(np.float32)
    model = _graph(table, table.T.copy() if form == "initializer" else None)
    result, [shared] = weight_only.quantise_weight_only(model, 8)
    assert (shared.embedding_lookups, shared.lm_heads, shared.dtype) == (1, 1, "int8")
    assert result.matmul_weights == 0 and result.quantised_values == V * H
    onnx.checker.check_model(model)
    assert [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2] == []
    ids = rng.integers(0, V, (3, 5))
    x = rng.standard_normal((3, 1, H)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["y"], {"ids": ids, "x": x})[0]
    q, scales = weight_only.quantise_rows(table, 8)
    restored = weight_only.dequantise_rows(q, scales, H)
    expected = (x + restored[ids].mean(1, keepdims=True)) @ restored.T
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
