"""ONNX export: folder contents, parity with torch per backbone family, precisions, CLI, errors."""
from __future__ import annotations

import json
import shutil

import onnx
import pytest

from pyserini_diffret import load_model
from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.onnx_export import ExportError, compare_models, export_model
from pyserini_diffret.onnx_export.__main__ import main as cli
from pyserini_diffret.core.record import GRAPH_NAME, INPUT_NAMES, OUTPUT_NAMES, RECORD_KEY
from tests.conftest import run_python
from tests.onnx_fixtures import FAMILIES


def _graph(folder):
    return onnx.load(str(folder / GRAPH_NAME), load_external_data=False)


def _ops(folder) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in _graph(folder).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("name", FAMILIES)
def test_export_matches_torch(onnx_dirs, tiny_models, name):
    exported = load_model(onnx_dirs[name])
    assert exported.runtime.name == "onnx"
    report = compare_models(exported, tiny_models[name], precision="fp32")
    assert report.passed, report.format()
    assert report.worst("slot_rel_error") <= 1e-4
    # The random tiny models give real impact weights, so the sparse comparison is not vacuous.
    assert sum(s.impact_entries for s in report.sides) > 20


def test_export_matches_torch_on_real_weights(splade_onnx_dir, splade_tiny_dir):
    exported = load_model(splade_onnx_dir)
    reference = load_model(splade_tiny_dir, runtime="torch")
    report = compare_models(exported, reference, precision="fp32")
    assert report.passed, report.format()
    assert report.worst("term_abs_error") <= 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_folder_is_self_contained_and_recorded(onnx_dirs, tiny_models, name):
    folder = onnx_dirs[name]
    torch_model = tiny_models[name]
    config = RetrieverConfig.load(folder)
    assert config.runtime == "onnx" and config.backbone == name
    assert (config.hidden_size, config.vocab_size) == (torch_model.hidden_size, torch_model.vocab_size)
    assert config.mask_token == torch_model.tokenizer.convert_ids_to_tokens(torch_model.layout.mask_id)
    record = config.extra[RECORD_KEY]
    assert record["precision"] == "fp32" and record["opset"] >= 18 and record["attention"] == "fused"
    assert record["layout"]["mask_id"] == torch_model.layout.mask_id
    assert tuple(record["layout"]["tail_ids"]) == torch_model.layout.tail_ids
    assert record["terms_per_slot"] == torch_model.config.terms_per_slot
    assert set(record["versions"]) >= {"torch", "transformers", "onnx", "onnxruntime", "pyserini_diffret"}
    assert record["graph_bytes"] == (folder / GRAPH_NAME).stat().st_size
    assert (folder / "tokenizer_config.json").is_file()
    graph = _graph(folder).graph
    # stop_truncation is an input only where the zero-shot stop-token rule is built in (the tiny decoders
    # load as zero-shot instruction models; the masked LM does not).
    expected = [n for n in INPUT_NAMES if n != "stop_truncation" or config.stop_truncation]
    assert config.stop_truncation == (name != "mlm") and [i.name for i in graph.input] == expected
    assert record["inputs"] == [i.name for i in graph.input]
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert dims["input_ids"] == ["batch", "sequence"] and dims["slot_offsets"] == ["slots"]
    assert dims["slot_vectors"] == ["batch", "slots", config.hidden_size]
    assert dims["content_ids"] == ["batch", "content"]
    assert dims["content_scores"] == ["batch", "slots", "content"]
    ops = _ops(folder)
    assert ops.get("MultiHeadAttention") == 2  # one per layer of the 2-layer models
    norm = "SkipLayerNormalization" if name == "mlm" else "SkipSimplifiedLayerNormalization"
    assert ops.get(norm, 0) >= 2, ops
    # The LM head runs on the K slots only and is read at the content ids: no tensor of the graph is
    # vocabulary-wide, [.., V], but the logits [batch, slots, V] of the stop-token rule's argmax (shapes from
    # onnxruntime's symbolic shape inference).
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from pyserini_diffret.onnx_export.exporter import _reduce_shape_rules

    with _reduce_shape_rules():
        inferred = SymbolicShapeInference.infer_shapes(_graph(folder), auto_merge=True).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.value_info}
    wide = [dims for dims in shapes.values() if len(dims) > 1 and dims[-1] == config.vocab_size]
    assert shapes and wide == ([["batch", "slots", config.vocab_size]] if config.stop_truncation else [])


def test_loading_needs_no_source_model(onnx_dirs, tmp_path, monkeypatch):
    import transformers

    moved = tmp_path / "elsewhere"
    shutil.copytree(onnx_dirs["dream"], moved)

    def refuse(*args, **kwargs):
        raise AssertionError("an ONNX model must not load torch weights")

    for name in ("AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)
    model = load_model(moved)
    reps = model.encode_documents(["Aspirin reduces the risk of heart attack.", "bone"])
    assert reps.slots.shape == (2, model.k_doc, model.hidden_size)


def test_export_is_deterministic(tiny_model_dirs, onnx_dirs, tmp_path):
    again = export_model(tiny_model_dirs["llada"], tmp_path / "again", backbone="llada")
    first = onnx_dirs["llada"]
    assert (again / GRAPH_NAME).read_bytes() == (first / GRAPH_NAME).read_bytes()
    assert json.loads((again / CONFIG_NAME).read_text()) == json.loads((first / CONFIG_NAME).read_text())


def test_config_options_are_recorded(tiny_model_dirs, tmp_path):
    out = export_model(tiny_model_dirs["mlm"], tmp_path / "opts", backbone="mlm", k_query=2, k_doc=6, terms_per_slot=16,
                       max_document_length=40)
    config = RetrieverConfig.load(out)
    assert (config.k_query, config.k_doc, config.terms_per_slot, config.max_document_length) == (2, 6, 16, 40)
    assert config.extra[RECORD_KEY]["terms_per_slot"] == 16
    reference = load_model(tiny_model_dirs["mlm"], backbone="mlm", k_query=2, k_doc=6, terms_per_slot=16, max_document_length=40)
    assert compare_models(load_model(out), reference).passed


def test_stop_token_rule_is_exported_for_zero_shot_models(tiny_model_dirs, onnx_dirs, tmp_path):
    """stop_truncation=True (zero-shot instruction models): the graph keeps the LM head over the whole
    vocabulary for the argmax, takes the flag as an input, and matches torch with the rule on and off."""
    out = export_model(tiny_model_dirs["dream"], tmp_path / "zero-shot", backbone="dream", stop_truncation=True)
    exported = load_model(out)
    assert "stop_truncation" in exported.spec.record.inputs
    reference = load_model(tiny_model_dirs["dream"], backbone="dream", runtime="torch", stop_truncation=True)
    for stop in (True, False):
        report = compare_models(exported, reference, precision="fp32", stop_truncation=stop)
        assert report.passed, report.format()
    # The argmax over the whole vocabulary is there for the rule only.
    assert _ops(out).get("ArgMax") == 1 and "ArgMax" not in _ops(onnx_dirs["mlm"])


def test_fp16_export(tiny_model_dirs, tiny_models, tmp_path):
    out = export_model(tiny_model_dirs["dream"], tmp_path / "fp16", backbone="dream", precision="fp16")
    graph = _graph(out).graph
    types = {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.initializer if len(t.dims) == 2}
    assert types == {"FLOAT16"}  # weights in half precision; outputs stay float32
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.output)
    with pytest.warns(UserWarning, match="fp16 export runs slowly on CPU"):
        exported = load_model(out)
    report = compare_models(exported, tiny_models["dream"], precision="fp16")
    assert report.passed, report.format()


def test_int8_export_loads_and_runs(splade_tiny_dir, splade_onnx_dir, tmp_path):
    out = export_model(splade_tiny_dir, tmp_path / "int8", precision="int8")
    ops = _ops(out)
    assert ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulInteger", 0) > 0, ops
    quantised, full = load_model(out), load_model(splade_onnx_dir)
    texts = ["Aspirin reduces the risk of heart attack in adults with diabetes.", "bone", "shock waves " * 40]
    a, b = quantised.encode_documents(texts), full.encode_documents(texts)
    cosine = (a.slots * b.slots).sum(-1)
    assert cosine.min() > 0.95
    report = compare_models(quantised, full, precision="int8")
    assert report.passed and report.limits["slot_rel"] is None  # judged by retrieval quality, reported here


def test_external_data_and_plain_attention(tiny_model_dirs, tiny_models, tmp_path):
    out = export_model(tiny_model_dirs["mlm"], tmp_path / "ext", backbone="mlm", external_data=True,
                       fused_attention=False)
    record = RetrieverConfig.load(out).extra[RECORD_KEY]
    assert record["external_data"] == "model.onnx.data" and (out / "model.onnx.data").is_file()
    assert record["attention"] == "plain" and "MultiHeadAttention" not in _ops(out)
    assert (out / GRAPH_NAME).stat().st_size < (out / "model.onnx.data").stat().st_size
    assert compare_models(load_model(out), tiny_models["mlm"]).passed


def test_cli_with_verify(tiny_model_dirs, tmp_path):
    out = tmp_path / "cli"
    proc = run_python("-m", "pyserini_diffret.onnx_export", "--model", str(tiny_model_dirs["llada"]), "--output",
                      str(out), "--backbone", "llada", "--k-doc", "8", "--verify")
    assert "verification (fp32) against torch: PASSED" in proc.stdout
    assert "model.onnx" in proc.stdout and "diffret_config.json" in proc.stdout
    config = RetrieverConfig.load(out)
    assert config.k_doc == 8 and config.extra[RECORD_KEY]["verification"]["passed"] is True


def test_cli_errors(tiny_model_dirs, tmp_path, capsys):
    def run(*args):
        code = cli(list(args))
        return code, capsys.readouterr().err

    code, err = run("--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o1"))
    assert code == 2 and "neither a local model folder nor a registered name" in err
    code, err = run("--model", str(tiny_model_dirs["ar"]), "--output", str(tmp_path / "o2"), "--backbone", "ar")
    assert code == 2 and "cannot be exported as one graph" in err
    code, err = run("--model", str(tiny_model_dirs["dream"]), "--output", str(tmp_path / "o3"))
    assert code == 2 and "cannot tell the backbone" in err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    code, err = run("--model", str(tiny_model_dirs["mlm"]), "--output", str(occupied), "--backbone", "mlm")
    assert code == 2 and "exists and is not empty" in err
    code, err = run("--model", str(tiny_model_dirs["mlm"]), "--output", str(occupied), "--backbone", "mlm", "--overwrite")
    assert code == 2 and "not an exported model folder; refusing to overwrite" in err
    assert (occupied / "notes.txt").read_text() == "mine"
    code, err = run("--model", str(tiny_model_dirs["mlm"]), "--output", str(tmp_path / "o4"), "--opset", "17")
    assert code == 2 and "opset >= 18" in err


def test_overwrite_replaces_an_earlier_export(tiny_model_dirs, onnx_copy):
    earlier = onnx_copy("mlm")
    (earlier / "stale.txt").write_text("old")
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_model(tiny_model_dirs["mlm"], earlier, backbone="mlm")
    export_model(tiny_model_dirs["mlm"], earlier, backbone="mlm", overwrite=True, k_doc=5)
    assert not (earlier / "stale.txt").exists() and RetrieverConfig.load(earlier).k_doc == 5


def test_exporting_an_export_is_refused(onnx_dirs, tmp_path):
    with pytest.raises(ExportError, match="already an exported ONNX model folder"):
        export_model(onnx_dirs["mlm"], tmp_path / "twice")


def test_verification_failure_is_reported(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    from pyserini_diffret.onnx_export import VerificationFailed
    from pyserini_diffret.onnx_export.verify import LIMITS

    monkeypatch.setitem(LIMITS, "fp32", dict(LIMITS["fp32"], slot_rel=0.0))  # nothing can pass
    with pytest.raises(VerificationFailed, match="slot vectors: relative error .* exceeds the fp32 limit 0.0"):
        export_model(tiny_model_dirs["mlm"], tmp_path / "strict", backbone="mlm", verify=True)
    record = RetrieverConfig.load(tmp_path / "strict").extra[RECORD_KEY]
    assert record["verification"]["passed"] is False  # the folder stays, with the figures, for inspection
    code = cli(["--model", str(tiny_model_dirs["mlm"]), "--output", str(tmp_path / "strict2"), "--backbone", "mlm",
                "--verify"])
    assert code == 1 and "misses the fp32 limits" in capsys.readouterr().err


def test_unknown_options_are_refused(tiny_model_dirs, tmp_path):
    with pytest.raises(ExportError, match=r"unknown export option\(s\) \['top_kk'\]"):
        export_model(tiny_model_dirs["mlm"], tmp_path / "x", backbone="mlm", top_kk=3)
    with pytest.raises(ExportError, match="unknown precision 'int4'"):
        export_model(tiny_model_dirs["mlm"], tmp_path / "x", backbone="mlm", precision="int4")
    assert not (tmp_path / "x").exists()
