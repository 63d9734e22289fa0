"""Adapt an encoder to a corpus without queries or judgements: ``python -m pyserini_diffret.train adapt``.

Self-supervised pairs come from the user's own documents (``pseudo_queries``):

- title -> text: a title of at least ``MIN_TITLE_WORDS`` words is a query for its document's text;
- inverse cloze (Lee et al., 2019): a sentence drawn from a document is a query for the rest of it. One time
  in ten the sentence stays in the passage, so plain term overlap is rewarded too, as in the original task.

Negatives are the other passages of the batch plus BM25 hard negatives mined from the same corpus (never the
source document). Two teachers stay in the loss throughout (``distill_weight``), so the model keeps what it
knows and learns the corpus' vocabulary: its own frozen starting vectors (``dense_teacher="self"``) and BM25
statistics of this corpus (``sparse_teacher="bm25"``: saturated term frequency and the corpus' own idf).

Layout of ``--output DIR``: the adapted model exported to ONNX (what ``--encoder DIR`` loads) and its torch
weights in ``DIR/trainable`` (an encoder folder: further training or another export starts there). Work
files (the starting weights, the BM25 index for mining) live in ``DIR/.adapt`` until the run ends. The run
resumes from its last checkpoint when started again with the same settings. An export without torch weights
(the embedded default) starts from weights recovered from its graph (``onnx_export.recover``).
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.core.record import ModelFolderError
from pyserini_diffret.core.text import join_title
from pyserini_diffret.train.data import TITLE_SEPARATOR, Example, TrainingDataError

MIN_TITLE_WORDS = 3
MIN_SENTENCE_WORDS = 4
KEEP_SENTENCE = 0.1  # inverse cloze: share of pairs whose passage still holds the query sentence
TRAINABLE = "trainable"  # an export's sub-folder with weights that training can start from
WORK = ".adapt"

# Adaptation defaults (fixed before any measurement; see BENCHMARKS.md): a gentle learning rate from an
# already fine-tuned model, one BM25 hard negative per query (half the passages of the fine-tuning recipe:
# the step cost is the passages), and both teachers at full weight.
DEFAULTS: dict[str, Any] = dict(
    batch_size=16, hard_negatives=1, mine_negatives=10, mine_depth=30, epochs=1.0, learning_rate=2e-5,
    warmup_ratio=0.06, temperature=0.01, sparse_weight=1.0, dense_teacher="self", sparse_teacher="bm25",
    distill_steps=0, distill_weight=1.0, precision="bf16", lora="off", save_steps=20, seed=42,
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences split at ``. ! ?`` followed by white space, whatever the case (many collections are lower-cased).

    A rule rather than nltk's punkt: punkt's data is a download, and only candidate queries are needed here; a
    split after an abbreviation gives a shorter pseudo-query, not a wrong one.
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def pseudo_queries(documents: Sequence[tuple[str, str | None, str]], seed: int = 42,
                   title_separator: str = TITLE_SEPARATOR) -> list[Example]:
    """Training examples from ``(docid, title, text)`` triples; the same seed gives the same examples."""
    rng = np.random.default_rng([seed, 7919])
    examples: list[Example] = []
    for docid, title, text in documents:
        title = (title or "").strip()
        text = text.strip()
        if not (title or text):
            continue
        if len(title.split()) >= MIN_TITLE_WORDS and len(text.split()) >= MIN_SENTENCE_WORDS:
            examples.append(Example(query=title, positives=[text], query_id=f"{docid}#title", positive_ids=[docid]))
        sentences = split_sentences(text)
        candidates = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_SENTENCE_WORDS]
        if len(sentences) < 2 or not candidates:
            continue
        pick = candidates[int(rng.integers(len(candidates)))]
        keep = rng.random() < KEEP_SENTENCE
        rest = " ".join(s for i, s in enumerate(sentences) if keep or i != pick)
        passage = join_title(title, rest, title_separator)
        examples.append(Example(query=sentences[pick], positives=[passage], query_id=f"{docid}#ict",
                                positive_ids=[docid]))
    return examples


def read_documents(path: str | Path) -> list[tuple[str, str | None, str]]:
    """``(docid, title, text)`` of a corpus (BEIR or Pyserini JSON lines), read by the search-time reader."""
    from pyserini_diffret.workflow import collection  # noqa: PLC0415

    documents = []
    try:
        for doc, _ in collection.CorpusReader(path).read():
            documents.append((doc.docid, doc.title, doc.text))
    except collection.InputError as error:
        raise TrainingDataError(str(error)) from None
    if not documents:
        raise TrainingDataError(f"{path}: the corpus is empty")
    return documents


def starting_folder(model: str | Path, work: Path) -> Path:
    """The encoder folder (torch weights) that ``model`` names: itself, its export's ``trainable/`` weights (an
    adapted model), or weights recovered from the export's graph (the embedded default)."""
    from pyserini_diffret.onnx_export.recover import recover_weights  # noqa: PLC0415
    from pyserini_diffret.registry import resolve_model  # noqa: PLC0415

    path = resolve_model(model)
    settings = RetrieverConfig.load(path) if (path / CONFIG_NAME).is_file() else None
    if settings is None or settings.runtime != "onnx":
        return path  # a Hugging Face folder: train from it directly
    if (path / TRAINABLE / CONFIG_NAME).is_file():
        return path / TRAINABLE
    start = work / "start"
    if (start / CONFIG_NAME).is_file():
        return start
    try:
        return recover_weights(path, start)  # checked against the graph before it is used
    except ModelFolderError as error:
        raise TrainingDataError(str(error)) from None


def adapt(corpus: str | Path, model: str | Path, output: str | Path, *, precision: str = "int8",
          overwrite: bool = False, threads: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print, **overrides: Any) -> Path:
    """Adapt ``model`` to the documents of ``corpus`` and export it to ``output``; returns ``output``.

    ``overrides``: any ``TrainConfig`` field (``max_steps``, ``epochs``, ``learning_rate``...) over ``DEFAULTS``;
    ``precision``: the export's (``int8``, ``fp32``...).
    """
    from pyserini_diffret.onnx_export import export_model  # noqa: PLC0415
    from pyserini_diffret.train.data import corpus_fingerprint, mine_bm25_negatives  # noqa: PLC0415
    from pyserini_diffret.train.trainer import TrainConfig, train  # noqa: PLC0415

    output = Path(output)
    trainable, work = output / TRAINABLE, output / WORK
    if output.exists() and any(output.iterdir()):
        finished = (output / CONFIG_NAME).is_file() and not work.exists()
        if overwrite:
            shutil.rmtree(output)
        elif finished:
            raise TrainingDataError(f"{output}: already holds an adapted model; choose a new folder or pass --overwrite")
        elif not work.is_dir():
            raise TrainingDataError(f"{output}: exists, is not empty and is not an unfinished adaptation; "
                                    "choose a new folder or pass --overwrite")
    work.mkdir(parents=True, exist_ok=True)

    documents = read_documents(corpus)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training settings: {sorted(unknown)}")
    recipe = dict(DEFAULTS, **overrides)
    examples = pseudo_queries(documents, seed=recipe["seed"])
    if not examples:
        raise TrainingDataError(f"{corpus}: no document gives a training pair (a title of {MIN_TITLE_WORDS}+ words, "
                                f"or two sentences of which one has {MIN_SENTENCE_WORDS}+ words)")
    texts = {docid: join_title(title, text, TITLE_SEPARATOR) for docid, title, text in documents}
    log(f"{len(documents)} documents, {len(examples)} pseudo-queries "
        f"({sum(e.query_id.endswith('#title') for e in examples)} titles, "
        f"{sum(e.query_id.endswith('#ict') for e in examples)} sentences)")
    if recipe["hard_negatives"]:
        log("mining BM25 negatives from the corpus")
        mine_bm25_negatives(examples, texts, work / "bm25-index" / corpus_fingerprint(texts),
                            depth=recipe["mine_depth"], count=recipe["mine_negatives"])
        with_negatives = sum(bool(e.negatives) for e in examples)
        if not with_negatives:
            log("BM25 found no other document for any pseudo-query: training with in-batch negatives only")
            recipe["hard_negatives"] = 0
        elif with_negatives < len(examples):
            log(f"{len(examples) - with_negatives} pseudo-queries have no BM25 negative (in-batch negatives only)")

    start = starting_folder(model, work)
    if start.parent == work:
        log(f"{model} is an export without torch weights: starting from the weights recovered from its graph")
    base = RetrieverConfig.load(start) if (start / CONFIG_NAME).is_file() else None
    lengths = {} if base is None else dict(
        k_query=base.k_query, k_doc=base.k_doc, max_query_length=base.max_query_length or 32,
        max_document_length=base.max_document_length or 256, terms_per_slot=base.terms_per_slot)
    config = TrainConfig(model=str(start), output=str(trainable), data=str(corpus), resume=True, threads=threads,
                         progress=progress, prompts="paper", extra={"adapted_on": str(corpus)},
                         **dict(lengths, **recipe))
    if _trained(trainable, config):
        steps = RetrieverConfig.load(trainable).extra["training"]["steps"]
        log(f"training had finished ({steps} steps); exporting ({precision})")
    else:
        log(f"adapting {model} on {corpus} ({'resuming' if (trainable / 'checkpoints').is_dir() else 'starting'}; "
            f"torch weights in {trainable})")
        result = train(config, examples=examples, bm25_corpus=list(texts.values()))
        steps = result.steps
        log(f"trained {steps} steps in {result.seconds / 60:.1f} min; exporting ({precision})")
    staging = work / "export"
    export_model(trainable, staging, precision=precision, overwrite=True, log=log)
    for item in staging.iterdir():
        target = output / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    shutil.rmtree(work)
    for leftover in ("checkpoints", "bm25-index"):
        shutil.rmtree(trainable / leftover, ignore_errors=True)
    (trainable / "adapt.json").write_text(json.dumps({"corpus": str(corpus), "model": str(model),
                                                      "documents": len(documents), "examples": len(examples),
                                                      "steps": steps, "recipe": recipe}, indent=2) + "\n")
    log(f"adapted model in {output} (use --encoder {output})")
    return output


def _trained(folder: Path, config) -> bool:
    """Whether ``folder`` holds the finished result of this very training run (an export step was interrupted)."""
    args = folder / "training_args.json"
    if not ((folder / CONFIG_NAME).is_file() and args.is_file()):
        return False
    saved = json.loads(args.read_text(encoding="utf-8"))
    return all(saved.get(key) == getattr(config, key) for key in config._RESUME_KEYS)
