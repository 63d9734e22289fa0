#!/usr/bin/env bash
# One BEIR collection through Pyserini's own commands with a DiffRetriever model folder, on a GPU.
#     bash examples/reproduce/run_beir.sh MODEL_DIR BEIR_FOLDER WORK_FOLDER [DEVICE]
# MODEL_DIR holds a diffret_config.json (examples/reproduce/settings.py). Not run on the real weights here.
set -euo pipefail
M=$1; D=$2; W=$3; DEV=${4:-cuda}
PY=${PYTHON:-python}
mkdir -p "$W"
$PY -m pyserini_diffret.beir_topics --data "$D" --output "$W"
# One pass gives every representation: impact vectors, single vectors (FAISS) and all K_p slot vectors.
$PY -m pyserini_diffret.encode input --corpus "$D/corpus.jsonl" --fields title text \
  output --embeddings "$W/encoded" encoder --encoder "$M" --batch-size 64 --device "$DEV"
$PY -m pyserini.index.lucene --collection JsonVectorCollection --input "$W/encoded/impact" \
  --index "$W/impact-index" --generator DefaultLuceneDocumentGenerator --impact --pretokenized --threads 8
$PY -m pyserini.search.lucene --index "$W/impact-index" --topics "$W/topics.tsv" --output "$W/sparse.run" \
  --impact --encoder-class diffret --encoder "$M" --hits 1000 --batch-size 64 --threads 8
$PY -m pyserini.search.faiss --index "$W/encoded/dense" --topics "$W/topics.tsv" --encoder-class diffret \
  --encoder "$M" --device "$DEV" --output "$W/dense.run" --hits 1000 --batch-size 64 --threads 8
$PY -m pyserini_diffret.search_multi --index "$W/encoded/slots" --topics "$W/topics.tsv" --encoder "$M" \
  --device "$DEV" --output "$W/dense-multi.run" --hits 1000
$PY -m pyserini_diffret.fusion --runs "$W/dense.run" "$W/sparse.run" --output "$W/hybrid.run" --alpha 0.5
$PY -m pyserini_diffret.fusion --runs "$W/dense-multi.run" "$W/sparse.run" --output "$W/hybrid-multi.run" --alpha 0.5
for run in sparse dense dense-multi hybrid hybrid-multi; do
  echo "$run"; $PY -m pyserini.eval.trec_eval -c -m ndcg_cut.10 "$W/qrels.txt" "$W/$run.run" | grep ndcg
done
