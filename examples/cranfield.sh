#!/usr/bin/env bash
# The README's worked example: Pyserini's own commands with the embedded default model (--encoder diffret)
# on Cranfield (1,400 abstracts, 225 judged queries). Run from the repository root after `make setup`:
#     bash examples/cranfield.sh [BEIR_FOLDER] [WORK_FOLDER]
set -euo pipefail
D=${1:-../shared/data/cranfield}
W=${2:-runs/cranfield}
PY=${PYTHON:-.venv/bin/python}
TIMEFORMAT="  [%R s]"
step() { echo; echo "\$ ${*/#$PY/python}"; time "$@"; }

mkdir -p "$W"
step $PY -m pyserini_diffret.beir_topics --data "$D" --output "$W"
step $PY -m pyserini.encode input --corpus "$D/corpus.jsonl" --fields title text \
  output --embeddings "$W/impact-vectors" \
  encoder --encoder diffret --fields title text --batch 32 --device cpu
step $PY -m pyserini.index.lucene --collection JsonVectorCollection --input "$W/impact-vectors" \
  --index "$W/impact-index" --generator DefaultLuceneDocumentGenerator --impact --pretokenized --threads 2
step $PY -m pyserini.encode input --corpus "$D/corpus.jsonl" --fields title text \
  output --embeddings "$W/dense-index" --to-faiss \
  encoder --encoder diffret --fields title text --batch 32 --device cpu
step $PY -m pyserini.search.lucene --index "$W/impact-index" --topics "$W/topics.tsv" \
  --output "$W/sparse.run" --impact --encoder diffret --hits 1000 --batch-size 64 --threads 2
step $PY -m pyserini.search.faiss --index "$W/dense-index" --topics "$W/topics.tsv" \
  --encoder diffret --output "$W/dense.run" --hits 1000 --batch-size 64 --threads 2
# Pyserini's hybrid command; with --encoder diffret and no --normalization it fuses as the paper does
# (per-query min-max, 0.5 * sparse + 0.5 * dense, missing = 0); --no-normalization: Pyserini's raw-score sum;
# --normalization: Pyserini's own normalisation (alpha * sparse + dense, so --alpha 1.0 weighs the sides equally)
for fusion in "" "--no-normalization" "--normalization"; do
  alpha=0.5; [ "$fusion" = "--normalization" ] && alpha=1.0
  step $PY -m pyserini.search.hybrid dense --index "$W/dense-index" --encoder diffret \
    sparse --index "$W/impact-index" --impact --encoder diffret \
    fusion --alpha $alpha $fusion run --topics "$W/topics.tsv" --output "$W/hybrid-pyserini${fusion}.run" \
    --batch-size 64 --threads 2
done
step $PY -m pyserini_diffret.fusion --runs "$W/dense.run" "$W/sparse.run" --output "$W/hybrid.run" --alpha 0.5
step $PY -m pyserini.fusion --runs "$W/dense.run" "$W/sparse.run" --output "$W/rrf.run" --method rrf
for run in sparse dense hybrid hybrid-pyserini hybrid-pyserini--no-normalization hybrid-pyserini--normalization rrf; do
  step $PY -m pyserini.eval.trec_eval -c -m ndcg_cut.10 -m recall.100 "$W/qrels.txt" "$W/$run.run"
done
