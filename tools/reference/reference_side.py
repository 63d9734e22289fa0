"""Runs the reference implementation (ielab/diffretriever) on one model folder; executed by ``record.py``
inside the side environment (transformers 4.54.0, the reference's pin). Not imported by our package.

Only the reference modules the encoders need are imported, by file path, under a stand-in package name
(``refmodels``) so that ``src/models/__init__.py`` (which pulls in the AR baselines) is not executed. What
this script changes around the reference, and why (each is reported in the output's ``interventions``):

- model weights load in float32 (the reference asks ``from_pretrained`` for bfloat16), so that the
  numbers can be compared with ours at 1e-5;
- NLTK data (stopword list, Punkt tables) cannot be downloaded here: ``record.py`` writes our package's
  stopword list as NLTK's ``corpora/stopwords/english`` and ``word_tokenize`` in the reference's
  ``sparse_utils`` is replaced by NLTK's own data-free pieces (an untrained Punkt sentence splitter and
  the Treebank-style word tokenizer), the substitution ``pyserini_diffret/core/content.py`` makes;
- the zero-shot LLaDA encoder gets ``mask_token_id=126336``, the id its own table gives the hub name
  ``GSAI-ML/LLaDA-8B-Instruct`` (a local folder path is not in that table);
- the fine-tuned read-out of ``scripts/encode.py`` (``trained_diff`` branch: content mask, per-slot top-k,
  ``round``) is inline code in its ``main()``; it is re-stated here from that code (``finetuned_readout``)
  around the reference's own ``TrainableDiffusionRetriever.encode``; the pooling over K is the reference's
  own ``shard_io.pool_sparse_across_k``.

Everything else (prompt building, truncation, tail, padding, masks, forward pass, slot read-out, content
filter, quantisation of the zero-shot read-out, stop-token truncation) is the reference's code.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path


def _round9(value):
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list):
        return [_round9(v) for v in value]
    return value


def floats(array) -> list:
    import numpy as np

    return _round9(np.asarray(array, dtype=np.float32).astype(float).tolist())


def load_reference(reference: Path):
    """The reference's model modules (``src/models``) and ``scripts/shard_io.py``, imported by path."""
    package = types.ModuleType("refmodels")
    package.__path__ = [str(reference / "src" / "models")]
    sys.modules["refmodels"] = package

    sparse_utils = importlib.import_module("refmodels.sparse_utils")
    # Punkt's trained tables (punkt_tab) cannot be downloaded here: the same tokenisation with NLTK's
    # data-free pieces (what our content filter does).
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    sentences, words = PunktSentenceTokenizer(), NLTKWordTokenizer()

    def word_tokenize(text, language="english", preserve_line=False):
        return [token for sentence in ([text] if preserve_line else sentences.tokenize(text))
                for token in words.tokenize(sentence)]

    sparse_utils.word_tokenize = word_tokenize

    spec = importlib.util.spec_from_file_location("ref_shard_io", reference / "scripts" / "shard_io.py")
    shard_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shard_io)
    return {
        "sparse_utils": sparse_utils,
        "dream": importlib.import_module("refmodels.diffretriever_dream"),
        "llada": importlib.import_module("refmodels.diffretriever_llada"),
        "block_schedule": importlib.import_module("refmodels.block_schedule"),
        "trainable": importlib.import_module("refmodels.diffretriever_trainable"),
        "shard_io": shard_io,
    }


def force_float32() -> None:
    """``from_pretrained`` of the Auto classes the reference uses, with ``torch_dtype`` float32."""
    import torch
    import transformers

    for name in ("AutoModel", "AutoModelForCausalLM"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained.__func__

        def from_pretrained(klass, *args, _original=original, **kwargs):
            kwargs["torch_dtype"] = torch.float32
            return _original(klass, *args, **kwargs)

        cls.from_pretrained = classmethod(from_pretrained)


def normalise(slots):
    """The evaluation's unit vectors (``scripts/evaluate_sweep.py``: ``x / max(||x||, 1e-12)``), in float32."""
    import torch

    slots = slots.float()
    return slots / torch.linalg.vector_norm(slots, dim=-1, keepdim=True).clamp(min=1e-12)


def single(unit_slots):
    """The evaluation's single vector: mean over the slots that are not all zero (float32)."""
    kept = (unit_slots.pow(2).sum(dim=-1) > 0).float()
    count = kept.sum(dim=1, keepdim=True).clamp(min=1)
    return (unit_slots * kept.unsqueeze(-1)).sum(dim=1) / count


def pooled_impacts(indices, values):
    """Per text ``{id: int}``: the max over slots of the integer impacts, zeros dropped (exact, float32)."""
    out = []
    for row_ids, row_vals in zip(indices.tolist(), values.tolist()):
        pooled: dict[int, float] = {}
        for slot_ids, slot_vals in zip(row_ids, row_vals):
            for i, v in zip(slot_ids, slot_vals):
                if v > 0:
                    pooled[int(i)] = max(pooled.get(int(i), 0.0), float(v))
        for v in pooled.values():
            assert v == int(v), v
        out.append({str(i): int(v) for i, v in sorted(pooled.items())})
    return out


def stored_impacts(shard_io, indices, values, vocab_size):
    """What the reference's encode writes for the same impacts: ``pool_sparse_across_k`` (bfloat16 values)."""
    import torch

    si, sv = shard_io.pool_sparse_across_k(indices.to(torch.int32), values.float(), vocab_size=vocab_size)
    out = []
    for row_ids, row_vals in zip(si[:, 0].tolist(), sv[:, 0].float().tolist()):
        out.append({str(i): float(v) for i, v in sorted(zip(row_ids, row_vals)) if i >= 0 and v > 0})
    return out


def finetuned_readout(result, texts, tokenizer, get_content_token_ids, topk):
    """``scripts/encode.py``, ``trained_diff`` branch: content mask (the text's content ids, multiplied in),
    per-slot top-``topk`` of ``log1p(relu(logit))`` (K > 1: ``sparse_acts_per_pos``; K = 1: ``sparse_acts``),
    values ``(v * 100).round()``. Returns ``[B, K, topk]`` indices and values."""
    import torch

    content_ids = get_content_token_ids(texts, tokenizer)
    per_pos = result.get("sparse_acts_per_pos")
    acts = per_pos if per_pos is not None else result["sparse_acts"].unsqueeze(1)
    batch, _, vocab = acts.shape
    mask = torch.zeros(batch, vocab, dtype=acts.dtype)
    for row, ids in enumerate(content_ids):
        if ids:
            mask[row, torch.tensor(sorted(ids), dtype=torch.long)] = 1.0
    acts = acts * mask.unsqueeze(1)
    values, indices = acts.topk(topk, dim=-1)
    values = (values.float() * 100).round().int().float()
    return indices, values


class Spy:
    """Records what the reference's encoder feeds its forward pass and what it decodes at the slots."""

    def __init__(self, model) -> None:
        self.calls: list[dict] = []
        self.decoded: list[list[int]] = []
        self._encode = model.encode_promptreps
        self._sample = model._sample_with_confidence
        model.encode_promptreps = self.encode_promptreps
        model._sample_with_confidence = self.sample

    def encode_promptreps(self, input_ids, attention_mask, **kwargs):
        self.calls.append({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()})
        return self._encode(input_ids, attention_mask, **kwargs)

    def sample(self, logits, *args, **kwargs):
        confidence, x0 = self._sample(logits, *args, **kwargs)
        self.decoded.append(x0.tolist())
        return confidence, x0


def zero_shot(refs, arch, folder, reference, k, side_texts, is_query, budget, batch):
    """The zero-shot read-out: ``encode(..., encoding_mode='promptreps', encode_type='all_steps')`` with
    ``num_denoise_steps=1`` and the ``few`` prompts, as ``scripts/run_encode.sh`` runs it."""
    prompts = reference / "prompts" / "default"
    common = dict(model_name=str(folder), max_length=budget, normalize=False, num_denoise_steps=1,
                  query_prompt=str(prompts / "query_prompt_few.yaml"),
                  passage_prompt=str(prompts / "passage_prompt_few.yaml"), n_gen_tokens=k)
    if arch == "dream":
        model = refs["dream"].DreamRetriever(**common)
    else:
        schedule = refs["block_schedule"].BlockSchedule(block_length=32)
        model = refs["llada"].LLaDA2Retriever(block_schedule=schedule, mask_token_id=126336, **common)
    model.eval()
    spy = Spy(model)
    size = len(side_texts) if batch == "all" else 1
    out = model.encode(side_texts, batch_size=size, encoding_mode="promptreps", is_query=is_query,
                       show_progress=False, encode_type="all_steps")
    stop_ids = sorted(set(model.tokenizer.all_special_ids) - {model.mask_token_id})
    unit = normalise(out["repr_hidden"])
    frame = (model._query_prefix_ids, model._query_suffix_ids) if is_query else \
        (model._passage_prefix_ids, model._passage_suffix_ids)
    record = {
        "frame": {"prefix": list(frame[0]), "suffix": list(frame[1])},
        "tail": model._build_tail_ids(model._n_tail),
        "stop_ids": stop_ids,
        "batches": _batches(spy.calls, k, model._n_tail),
        # one x0 list per text (the K masked slots are the only masked positions of the MASK block)
        "decoded_ids": spy.decoded,
        "slot_vectors": floats(unit),
        "single_vectors": floats(single(unit)),
        "impacts": pooled_impacts(out["sparse_indices"], out["sparse_values"]),
        "impacts_stored": stored_impacts(refs["shard_io"], out["sparse_indices"], out["sparse_values"],
                                         model.tokenizer.vocab_size),
    }
    return record


def fine_tuned(refs, arch, folder, reference, k, side_texts, is_query, budget, batch, topk):
    """The fine-tuned read-out of ``scripts/encode.py`` (``trained_diff``) on the reference's
    ``TrainableDiffusionRetriever`` built from the same folder (no LoRA: the read-out rule is what is tested)."""
    import torch

    prompts = reference / "prompts" / "default"
    model = refs["trainable"].TrainableDiffusionRetriever.from_backbone(
        str(folder), "dream" if arch == "dream" else "llada1",
        query_prompt=str(prompts / "query_prompt_few.yaml"), passage_prompt=str(prompts / "passage_prompt_few.yaml"),
        max_length=budget, n_gen_tokens=k, num_denoise_steps=1, normalize=True, gradient_checkpointing=False,
        lora_rank=0)
    model.eval()
    size = len(side_texts) if batch == "all" else 1
    calls, slots, indices, values = [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(side_texts), size):
            texts = side_texts[start:start + size]
            input_ids, attention_mask = model.tokenize(texts, is_query=is_query)
            calls.append({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()})
            result = model.encode(input_ids, attention_mask, is_query=is_query, compute_sparse=True)
            idx, val = finetuned_readout(result, texts, model.tokenizer, refs["sparse_utils"].get_content_token_ids,
                                         topk)
            slots.append(result["repr_hidden"].float())
            indices.append(idx)
            values.append(val)
    unit = normalise(torch.cat(slots))
    indices, values = torch.cat(indices), torch.cat(values)
    return {
        "tail": list(model._tail_ids),
        "batches": _batches(calls, k, model._n_tail),
        "slot_vectors": floats(unit),
        "single_vectors": floats(single(unit)),
        "impacts": pooled_impacts(indices, values),
        "impacts_stored": stored_impacts(refs["shard_io"], indices, values, model.tokenizer.vocab_size),
    }


def reference_document_texts(reference: Path, documents: list[dict]) -> list[str]:
    """Document texts by the reference's own rule: ``_parse_item`` of ``scripts/encode.py`` (title + ". " + text,
    the title alone when there is no text), taken from that file alone (importing the script would import
    every baseline it supports)."""
    import ast

    tree = ast.parse((reference / "scripts" / "encode.py").read_text(encoding="utf-8"))
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "_parse_item")
    namespace: dict = {}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "scripts/encode.py", "exec"), namespace)
    return [namespace["_parse_item"](record, i)[1] for i, record in enumerate(documents)]


def _batches(calls, k, n_tail):
    out = []
    for call in calls:
        length = len(call["input_ids"][0])
        start = length - k - n_tail  # the reference's g_start: first of the K slots (left padding)
        out.append({"input_ids": call["input_ids"], "attention_mask": call["attention_mask"],
                    "slot_positions": list(range(start, start + k))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--arch", choices=("dream", "llada"), required=True)
    parser.add_argument("--plan", type=Path, required=True, help="JSON: texts, K values, budget, batches, topk")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text(encoding="utf-8"))

    import torch

    torch.manual_seed(0)
    force_float32()
    refs = load_reference(args.reference)
    side_texts = {"query": plan["queries"], "document": reference_document_texts(args.reference, plan["documents"])}
    cases = []
    for k in plan["k"]:
        for side in ("query", "document"):
            texts = side_texts[side]
            for batch in plan["batches"]:
                zs = zero_shot(refs, args.arch, args.folder, args.reference, k, texts, side == "query",
                               plan["budget"], batch)
                cases.append({"readout": "zero_shot", "k": k, "side": side, "batch": batch,
                              "terms_per_slot": 128, **zs})
                if batch not in plan["finetuned_batches"]:
                    continue
                for topk in [plan["finetuned_topk"], *plan["finetuned_small_topk"]]:
                    ft = fine_tuned(refs, args.arch, args.folder, args.reference, k, texts, side == "query",
                                    plan["budget"], batch, topk)
                    cases.append({"readout": "fine_tuned", "k": k, "side": side, "batch": batch,
                                  "terms_per_slot": topk, **ft})
    import nltk
    import transformers

    args.out.write_text(json.dumps({
        "document_texts": side_texts["document"],
        "cases": cases,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "nltk": nltk.__version__,
                     "tokenizers": importlib.import_module("tokenizers").__version__},
        "nltk_data": os.environ.get("NLTK_DATA", ""),
    }), encoding="utf-8")


if __name__ == "__main__":
    main()
