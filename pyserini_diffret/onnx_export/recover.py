"""Torch weights back from an exported masked-LM graph, so that an export can be trained again.

An exported folder ships the graph only (the embedded default ``diffret`` among them); ``train adapt`` needs the
model's tensors. Every weight is in the graph: named ones (embeddings, LayerNorms, biases) under their module
names, the dense matrices as anonymous ``MatMul``/``MatMulInteger`` inputs (int8 with a scale and zero point per
output column after dynamic quantisation), and the tied word embeddings as int8 rows (``tied.py``). A matrix is
named by its node, which carries the module path of the trace (``/bert/encoder/layer.0/attention/self/query/
MatMul`` -> ``bert.encoder.layer.0.attention.self.query.weight``). The result is checked against the graph on sample texts before it
is used. int8 exports give the dequantised weights: a starting point for training, not a copy of the source.
Exports of every record format are read, also those this version no longer runs (formats 1-3, whose LM head
was read over the whole vocabulary): recovering them and exporting again is how such a folder is brought up
to date when its Hugging Face folder is gone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.core.record import GRAPH_NAME, RECORD_KEY, ModelFolderError

TIED = "tied_embedding/"
SAMPLE_TEXTS = ("Aspirin reduces the risk of heart attack in adults.", "Supersonic flow over a swept wing.",
                "vitamin d and bone fractures")
MIN_COSINE = 0.98  # slot vectors, recovered torch model against the graph (int8 activations add noise)


def recover_weights(export_dir: str | Path, output: str | Path) -> Path:
    """Write ``output``: a Hugging Face ``BertForMaskedLM`` folder with the export's settings and tokenizer."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    export_dir, output = Path(export_dir), Path(output)
    settings = RetrieverConfig.load(export_dir)
    # Read leniently: exports of every record format are recovered, also those this version no longer runs.
    record = settings.extra.get(RECORD_KEY)
    if settings.runtime != "onnx" or not isinstance(record, dict):
        raise ModelFolderError(f"{export_dir}: not an exported ONNX model folder (no export record)")
    model_type = str(record.get("model_type", ""))
    if settings.backbone != "mlm" or model_type not in ("bert", ""):
        raise ModelFolderError(f"{export_dir}: torch weights can be recovered from exported BERT masked LMs only "
                               f"(this is a {settings.backbone!r} / {model_type or 'unknown'!r} export); train from the "
                               "Hugging Face folder it was exported from")
    graph_path = export_dir / str(record.get("graph", GRAPH_NAME))
    if not graph_path.is_file():
        raise ModelFolderError(f"{export_dir}: incomplete export: {graph_path.name} is missing")
    graph = onnx.load(str(graph_path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    weights = _weights_by_position(graph, values, consumers)
    config = _bert_config(graph, weights, settings)
    _save(weights, config, export_dir, output, settings)
    _check(graph_path, output)
    return output


def _module_path(node_name: str) -> str:
    """``/bert/encoder/layer.0/attention/self/query/MatMul_quant`` -> ``bert.encoder.layer.0.attention.self.query``:
    the exporter traces with module scopes, and quantisation keeps the node names."""
    parts = node_name.strip("/").split("/")[:-1]
    if not parts:
        raise ModelFolderError(f"graph node {node_name!r} carries no module path; the graph is not one of our exports")
    path = ".".join(parts)
    # The LM head's transform is called on its own (its projection is read by rows), so its scope is short.
    return "cls.predictions." + path if path.startswith("transform.") else path


def _weights_by_position(graph, values: dict[str, np.ndarray], consumers: dict[str, list]) -> dict[str, np.ndarray]:
    """Every weight from the node that uses it, never from its initializer's name: the export merges identical
    constants (LayerNorms left at one, zero biases), so a name may stand for several weights."""
    weights: dict[str, np.ndarray] = {}
    head_biases: list[np.ndarray] = []
    for node in graph.node:
        op, inputs = node.op_type, list(node.input)
        if op in ("MatMul", "MatMulInteger") and inputs[1] in values and not inputs[1].startswith(TIED):
            module = _module_path(node.name)
            if module == "cls.predictions.decoder":
                continue  # the word embeddings, tied
            matrix = values[inputs[1]].astype(np.float32)
            if op == "MatMulInteger":
                base = inputs[1].removesuffix("_quantized")
                matrix = (matrix - values[base + "_zero_point"].astype(np.float32)) * values[base + "_scale"]
            weights[module + ".weight"] = matrix.T  # MatMul takes [in, out]; Linear stores [out, in]
            _bias_and_norm(node.output[0], module, values, consumers, weights)
        elif op == "LayerNormalization" and node.name.startswith("/"):
            module = _module_path(node.name)
            weights[module + ".weight"], weights[module + ".bias"] = values[inputs[1]], values[inputs[2]]
        elif op == "Gather" and inputs[0] in values and node.name.startswith("/") and "embeddings" in node.name:
            weights[_module_path(node.name) + ".weight"] = values[inputs[0]]
        elif op == "Add" and node.name.startswith("/cls/predictions/decoder/"):  # the whole-vocabulary head
            weights["cls.predictions.bias"] = values[next(i for i in inputs if i in values)]
        elif (op == "Gather" and inputs[0] in values and not inputs[0].startswith(TIED) and values[inputs[0]].ndim == 1
              and values[inputs[0]].size > 1):
            head_biases.append(values[inputs[0]])  # the LM head's bias, read at the content ids
    if TIED + "int8" in values:
        rows = values[TIED + "int8"].astype(np.float32)  # symmetric: zero point 0 (tied.py)
        weights["bert.embeddings.word_embeddings.weight"] = rows * values[TIED + "row_scale"][:, None]
    table = weights.get("bert.embeddings.word_embeddings.weight")
    biases = [b for b in head_biases if table is not None and b.shape == table.shape[:1]]
    if biases and "cls.predictions.bias" not in weights:
        weights["cls.predictions.bias"] = biases[0]
    return weights


def _bias_and_norm(product: str, module: str, values: dict[str, np.ndarray], consumers: dict[str, list],
                   weights: dict[str, np.ndarray]) -> None:
    """The bias a matrix product meets next (a few nodes on: the int8 path casts and scales first) and, where the
    addition is fused into ``SkipLayerNormalization``, the LayerNorm that follows the dense layer."""
    frontier = [product]
    for _ in range(4):
        following = [n for name in frontier for n in consumers.get(name, [])]
        for node in following:
            inputs = list(node.input)
            if node.op_type == "BiasGelu":
                weights[module + ".bias"] = values[inputs[1]]
                return
            if node.op_type == "SkipLayerNormalization":
                norm = module.rsplit(".", 1)[0] + ".LayerNorm"
                weights[norm + ".weight"], weights[norm + ".bias"] = values[inputs[2]], values[inputs[3]]
                if len(inputs) > 4 and inputs[4]:
                    weights[module + ".bias"] = values[inputs[4]]
                return
            if node.op_type == "Add" and any(i in values and values[i].ndim == 1 for i in inputs):
                weights[module + ".bias"] = values[next(i for i in inputs if i in values and values[i].ndim == 1)]
                return
        frontier = [out for node in following for out in node.output]
    raise ModelFolderError(f"the product of {module} reaches no bias; the graph is not a BERT export we know")


def _bert_config(graph, weights: dict[str, np.ndarray], settings: RetrieverConfig) -> dict:
    attributes = {a.name: a for node in graph.node if node.op_type == "MultiHeadAttention" for a in node.attribute}
    epsilons = {a.f for node in graph.node if "LayerNormalization" in node.op_type for a in node.attribute
                if a.name == "epsilon"}
    if "num_heads" not in attributes:
        raise ModelFolderError("no MultiHeadAttention node: the number of attention heads is unknown "
                               "(recovery needs an export with fused attention)")
    layers = sorted({int(n.split(".")[3]) for n in weights if n.startswith("bert.encoder.layer.")})
    vocab, hidden = weights["bert.embeddings.word_embeddings.weight"].shape
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": int(vocab), "hidden_size": int(hidden),
        "num_hidden_layers": len(layers), "num_attention_heads": int(attributes["num_heads"].i),
        "intermediate_size": int(weights["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(weights["bert.embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(weights["bert.embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu", "layer_norm_eps": float(min(epsilons)) if epsilons else 1e-12,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "tie_word_embeddings": True,
        "pad_token_id": 0,
    }


def _save(weights: dict[str, np.ndarray], config: dict, export_dir: Path, output: Path, settings: RetrieverConfig) -> None:
    import torch  # noqa: PLC0415
    from transformers import BertConfig, BertForMaskedLM  # noqa: PLC0415

    from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415

    model = BertForMaskedLM(BertConfig(**config))
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.items()}  # writable copies
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")]
    if missing or unexpected:
        raise ModelFolderError(f"{export_dir}: recovered weights do not fit BertForMaskedLM "
                               f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.tie_weights()
    output.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(str(output))
    load_tokenizer(export_dir).save_pretrained(str(output))
    recovered = RetrieverConfig.load(export_dir)
    recovered.runtime = "torch"
    recovered.extra = dict({k: v for k, v in recovered.extra.items() if k != "onnx"},
                           recovered_from=str(export_dir))
    recovered.save(output)
    (output / "recovered.json").write_text(json.dumps({"export": str(export_dir), "config": config}, indent=2) + "\n")


def _check(graph_path: Path, output: Path) -> None:
    """The recovered torch model's slot vectors against the graph's, on one batch of sample texts. The graph
    runs in onnxruntime directly, fed whichever inputs it declares (a graph of an earlier record format reads
    a vocabulary mask where the current one reads content ids), so that old exports can be recovered too."""
    import onnxruntime as ort  # noqa: PLC0415

    from pyserini_diffret import load_model  # noqa: PLC0415

    model = load_model(output)
    texts = list(SAMPLE_TEXTS)
    batch = model.prompts.build(texts, "document", model.k_doc)
    content_ids = model.content.ids(texts)
    torch_slots = model.runtime.run(batch, content_ids, False)[0]
    available = {
        "input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
        "slot_offsets": np.arange(batch.num_slots, dtype=np.int64), "content_ids": content_ids,
        "content_mask": model.content.mask(texts), "stop_truncation": np.array(False),
    }
    options = ort.SessionOptions()
    options.log_severity_level = 3  # older graphs carry stale shape annotations onnxruntime warns about
    session = ort.InferenceSession(str(graph_path), options, providers=["CPUExecutionProvider"])
    unknown = [i.name for i in session.get_inputs() if i.name not in available]
    if unknown:
        raise ModelFolderError(f"{graph_path}: graph inputs {unknown} are not those of our exports")
    graph_slots = session.run(["slot_vectors"], {i.name: available[i.name] for i in session.get_inputs()})[0]
    a = graph_slots / np.linalg.norm(graph_slots, axis=-1, keepdims=True)
    b = torch_slots / np.linalg.norm(torch_slots, axis=-1, keepdims=True)
    worst = float((a * b).sum(-1).min())
    if worst < MIN_COSINE:
        raise ModelFolderError(f"{graph_path.parent}: the recovered torch weights disagree with the graph (slot "
                               f"cosine {worst:.4f} < {MIN_COSINE}); train from the Hugging Face folder it was "
                               "exported from")
