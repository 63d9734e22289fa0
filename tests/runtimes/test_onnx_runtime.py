"""The ONNX Runtime encoder: load_model on exported folders, dynamic shapes, options, folder errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pyserini_diffret import load_model
from pyserini_diffret.core.config import CONFIG_NAME
from pyserini_diffret.core.record import GRAPH_NAME, ModelFolderError
from pyserini_diffret.core.devices import parse_device, physical_cores
from pyserini_diffret.runtimes.onnx_runtime import OnnxRuntime

SHORT = ["bone", "enzymes", "Aspirin"]
LONG = ["Vitamin D deficiency is associated with bone fractures and weak muscles, " * 12]
MIXED = [
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "Supersonic flow produces shock waves.",
    "bone",
    "Vitamin D deficiency is associated with bone fractures and weak muscles, " * 6,
    "Protein folding determines the function of enzymes inside the cell.",
    "",
    "Running, jumping and swimming are exercises that improve cardiovascular health.",
]


def _assert_close(a, b, atol=2e-5):
    np.testing.assert_allclose(a.slots, b.slots, atol=atol)
    np.testing.assert_allclose(a.dense, b.dense, atol=atol)
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        keys = x.keys() | y.keys()
        assert sum(x.get(t, 0) != y.get(t, 0) for t in keys) <= max(1, len(keys) // 100), (x, y)


def test_load_model_picks_the_runtime(onnx_dirs, tiny_model_dirs):
    model = load_model(onnx_dirs["mlm"])
    assert isinstance(model.runtime, OnnxRuntime) and model.runtime.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="no torch weights; use runtime='onnx'"):
        load_model(onnx_dirs["mlm"], runtime="torch")
    with pytest.raises(ModelFolderError, match="not an exported ONNX model folder"):
        load_model(tiny_model_dirs["mlm"], backbone="mlm", runtime="onnx")


@pytest.mark.parametrize("name", ["mlm", "dream", "llada"])
def test_dynamic_shapes_match_torch(onnx_dirs, tiny_model_dirs, name):
    """One graph: batch 1 and 7, short and long texts, padding, different K for queries and documents."""
    onnx_model = load_model(onnx_dirs[name], k_query=2, k_doc=5)
    torch_model = load_model(tiny_model_dirs[name], backbone=name, runtime="torch", k_query=2, k_doc=5)
    for batch_size in (1, 7):
        _assert_close(onnx_model.encode_documents(MIXED, batch_size=batch_size),
                      torch_model.encode_documents(MIXED, batch_size=batch_size))
        _assert_close(onnx_model.encode_queries(MIXED, batch_size=batch_size),
                      torch_model.encode_queries(MIXED, batch_size=batch_size))
    for texts in (SHORT, LONG):
        docs = onnx_model.encode_documents(texts)
        assert docs.slots.shape == (len(texts), 5, onnx_model.hidden_size)
        assert onnx_model.encode_queries(texts).slots.shape == (len(texts), 2, onnx_model.hidden_size)
        _assert_close(docs, torch_model.encode_documents(texts))
    one = load_model(onnx_dirs[name], k_query=1, k_doc=16)
    assert one.encode_queries(SHORT).slots.shape[1] == 1 and one.encode_documents(SHORT).slots.shape[1] == 16


def test_alone_equals_batched_and_extra_padding_changes_nothing(onnx_dirs):
    plain = load_model(onnx_dirs["dream"])
    padded = load_model(onnx_dirs["dream"], pad_multiple=8)
    batched = plain.encode_documents(MIXED, batch_size=7)
    _assert_close(padded.encode_documents(MIXED, batch_size=7), batched, atol=1e-5)
    for i, text in enumerate(MIXED):
        alone = plain.encode_documents([text])
        np.testing.assert_allclose(alone.slots[0], batched.slots[i], atol=1e-5)


@pytest.mark.parametrize("name", ["mlm", "dream"])
def test_texts_without_content_words_get_no_impacts_and_change_no_neighbour(onnx_dirs, tiny_model_dirs, name):
    """A text of stopwords only has no content ids (a row of padding): empty impacts, in a batch or alone,
    and the other texts' impacts are what they are alone; the torch runtime agrees."""
    texts = ["the of and", "Aspirin reduces the risk of heart attack.", "it is what it is"]
    model = load_model(onnx_dirs[name])
    batched = model.encode_documents(texts)
    assert batched.impact[0] == {} and batched.impact[2] == {} and batched.impact[1]
    assert model.encode_documents([texts[0]]).impact == [{}]
    alone = model.encode_documents([texts[1]]).impact[0]
    assert set(alone) == set(batched.impact[1])
    torch_model = load_model(tiny_model_dirs[name], backbone=name, runtime="torch")
    assert [set(i) for i in torch_model.encode_documents(texts).impact] == [set(i) for i in batched.impact]


def test_stop_truncation_is_a_graph_input(onnx_dirs, tiny_model_dirs):
    for flag in (False, True):
        onnx_model = load_model(onnx_dirs["llada"], stop_truncation=flag)
        torch_model = load_model(tiny_model_dirs["llada"], backbone="llada", runtime="torch", stop_truncation=flag)
        _assert_close(onnx_model.encode_documents(MIXED), torch_model.encode_documents(MIXED))


def test_session_options(onnx_dirs):
    assert physical_cores() >= 1
    model = load_model(onnx_dirs["mlm"], threads=1, batch_size=3)
    assert model.batch_size == 3
    assert model.encode_queries(SHORT).dense.shape == (3, model.hidden_size)
    assert parse_device("cuda:1") == ("cuda", 1) and parse_device("CPU") == ("cpu", 0)
    with pytest.raises(ValueError, match="is not supported; use"):
        load_model(onnx_dirs["mlm"], device="mps")


def test_cuda_without_cuda_is_a_clear_error(onnx_dirs):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(RuntimeError, match="has no CUDA provider.*onnxruntime-gpu"):
        load_model(onnx_dirs["mlm"], device="cuda")


def test_settings_built_into_the_graph_cannot_be_overridden(onnx_dirs):
    with pytest.raises(ValueError, match="logit_shift=0 is built into the exported graph"):
        load_model(onnx_dirs["dream"], logit_shift=1)
    positions = load_model(onnx_dirs["mlm"]).config.extra["onnx"]["max_positions"]
    with pytest.raises(ValueError, match=f"the model has {positions} positions"):
        load_model(onnx_dirs["mlm"], max_document_length=positions)
    with pytest.raises(TypeError):
        load_model(onnx_dirs["mlm"], dtype="float16")


def test_terms_per_slot_is_applied_on_the_host_and_can_be_changed_at_load(onnx_dirs, tiny_model_dirs):
    """The per-slot top-k runs on the host: an export takes any terms_per_slot, as the torch runtime does."""
    texts = ["Vitamin D deficiency is associated with bone fractures and weak muscles in adults."]
    wide, narrow = (load_model(onnx_dirs["mlm"], terms_per_slot=t).encode_documents(texts) for t in (128, 2))
    torch_narrow = load_model(tiny_model_dirs["mlm"], backbone="mlm", runtime="torch", terms_per_slot=2,
                              k_doc=narrow.slots.shape[1]).encode_documents(texts)
    assert len(narrow.impact[0]) < len(wide.impact[0])
    assert set(narrow.impact[0]) == set(torch_narrow.impact[0])


def test_stop_truncation_needs_the_rule_in_the_graph(onnx_dirs):
    assert "stop_truncation" not in load_model(onnx_dirs["mlm"]).spec.record.inputs
    with pytest.raises(ValueError, match="stop_truncation=True needs the stop-token rule in the graph"):
        load_model(onnx_dirs["mlm"], stop_truncation=True)


def test_lengths_past_the_position_table_fail_before_onnxruntime(onnx_dirs, monkeypatch):
    """The position limit is checked by the engine for every runtime (it once reached onnxruntime as an
    out-of-range GatherElements index)."""
    model = load_model(onnx_dirs["mlm"])
    positions = model.spec.max_positions
    configured = model.config.max_document_length
    with pytest.raises(ValueError, match=f"the model has {positions} positions; lower max_document_length"):
        model.set_lengths(document=10_000)
    assert model.config.max_document_length == configured  # refused, so unchanged
    within = model.prompts.max_text_length("document", model.k_doc) + 1
    model.set_lengths(document=within)  # within the table: taken
    assert model.config.max_document_length == within
    model.config.max_document_length = 10_000  # set directly: still caught before the graph runs
    monkeypatch.setattr(model.runtime, "run", lambda *args: pytest.fail("the runtime was called"))
    with pytest.raises(ValueError, match=f"{positions} positions"):
        model.encode_documents(["a very long text " * 3000])


# -- damaged and incomplete folders --------------------------------------------------------------------------
def _without_checksums(folder):
    """The folder with the checksums taken out of its record: only sizes are checked, so the later checks
    (tokenizer, graph, slot layout) are reached. Checksums: tests/runtimes/test_checksums.py."""
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    del data["extra"]["onnx"]["sha256"]
    path.write_text(json.dumps(data))


def test_missing_graph(onnx_copy):
    folder = onnx_copy()
    (folder / GRAPH_NAME).unlink()
    with pytest.raises(ModelFolderError, match="incomplete export: model.onnx is missing"):
        load_model(folder)


def test_missing_tokenizer(onnx_copy):
    folder = onnx_copy("dream")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(ModelFolderError, match="incomplete export: tokenizer.json is missing"):
        load_model(folder)  # a recorded file
    _without_checksums(folder)
    with pytest.raises(ModelFolderError, match="incomplete export: .*no tokenizer files"):
        load_model(folder)


def test_missing_config(onnx_copy):
    folder = onnx_copy()
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="incomplete exported ONNX model folder: diffret_config.json is missing"):
        load_model(folder)


def test_truncated_graph(onnx_copy):
    folder = onnx_copy()
    graph = folder / GRAPH_NAME
    graph.write_bytes(graph.read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match="1000 bytes where the export wrote .*damaged, truncated or replaced"):
        load_model(folder)


def test_unreadable_graph(onnx_copy):
    folder = onnx_copy()
    graph = folder / GRAPH_NAME
    graph.write_bytes(b"\xff" * graph.stat().st_size)  # same size, garbage inside
    with pytest.raises(ModelFolderError, match="model.onnx: its sha256 differs .*damaged or replaced"):
        load_model(folder)
    _without_checksums(folder)
    with pytest.raises(ModelFolderError, match="onnxruntime cannot load the graph"):
        load_model(folder)


@pytest.mark.parametrize("where", ["config", "record"])
def test_other_format_versions(onnx_copy, where):
    folder = onnx_copy()
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    if where == "config":
        data["format"] = 99
        expected = "config format 99 is not supported"
    else:
        data["extra"]["onnx"]["format"] = 99
        expected = "ONNX export record format 99 is not supported"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=expected):
        load_model(folder)


def test_record_without_layout(onnx_copy):
    folder = onnx_copy()
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    del data["extra"]["onnx"]["layout"]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match=r"the export record lacks \['layout'\]"):
        load_model(folder)


def test_tokenizer_of_another_model(onnx_copy, onnx_dirs):
    folder = onnx_copy("dream")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).write_bytes((onnx_dirs["llada"] / name).read_bytes())
    with pytest.raises(ModelFolderError, match="damaged or replaced"):
        load_model(folder)
    _without_checksums(folder)
    with pytest.raises(ValueError, match="tokenizer files do not belong to this graph"):
        load_model(folder)
