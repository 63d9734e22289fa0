"""In-memory retrieval and evaluation, for held-out checks during model development and the benchmarks.

Search: dense single vectors (inner product), dense multi-vector (MaxSim, clamped at 0 as at search time),
sparse impact weights (sum of products of integer weights), and the paper's hybrid (per query, min-max
normalise each list's top-1000, ``0.5 * dense + 0.5 * sparse``, a missing document counts 0).
Metrics follow trec_eval: nDCG@10 (gain = judged relevance, log2 discount; ties in score ordered by
document id descending) and recall@100 (relevant = judged >= 1), averaged over the judged queries.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pyserini_diffret.workflow.fusion import hybrid
from pyserini_diffret.workflow.trec import Run


# -- search -------------------------------------------------------------------------------------------------
def _top(scores: np.ndarray, docids: Sequence[str], k: int) -> dict[str, float]:
    k = min(k, scores.shape[0])
    index = np.argpartition(-scores, k - 1)[:k]
    return {docids[i]: float(scores[i]) for i in index}


def dense_search(queries: np.ndarray, docs: np.ndarray, qids: Sequence[str], docids: Sequence[str],
                 k: int = 1000, chunk: int = 256) -> Run:
    run: Run = {}
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    for start in range(0, len(qids), chunk):
        scores = np.asarray(queries[start:start + chunk], dtype=np.float32) @ docs.T
        for row, qid in zip(scores, qids[start:start + chunk]):
            run[qid] = _top(row, docids, k)
    return run


def maxsim_search(query_slots: np.ndarray, doc_slots: np.ndarray, qids: Sequence[str], docids: Sequence[str],
                  k: int = 1000, chunk: int = 32) -> Run:
    """``sum_i max(0, max_j q_i . d_j)``; all-zero (truncated) slots contribute nothing."""
    n, kp, h = doc_slots.shape
    flat = np.ascontiguousarray(doc_slots.reshape(n * kp, h), dtype=np.float32)
    run: Run = {}
    for start in range(0, len(qids), chunk):
        q = np.asarray(query_slots[start:start + chunk], dtype=np.float32)  # [C, Kq, H]
        c, kq, _ = q.shape
        sims = (flat @ q.reshape(c * kq, h).T).reshape(n, kp, c, kq)
        scores = np.maximum(sims.max(axis=1), 0.0).sum(axis=2).T  # [C, N]
        for row, qid in zip(scores, qids[start:start + chunk]):
            run[qid] = _top(row, docids, k)
    return run


def sparse_matrix(weights: Sequence[dict[str, int]], vocabulary: dict[str, int], grow: bool):
    from scipy import sparse  # noqa: PLC0415

    rows, cols, vals = [], [], []
    for i, vector in enumerate(weights):
        for term, value in vector.items():
            col = vocabulary.get(term)
            if col is None:
                if not grow:
                    continue
                col = vocabulary[term] = len(vocabulary)
            rows.append(i)
            cols.append(col)
            vals.append(value)
    return rows, cols, vals


def sparse_search(query_weights: Sequence[dict[str, int]], doc_weights: Sequence[dict[str, int]],
                  qids: Sequence[str], docids: Sequence[str], k: int = 1000) -> Run:
    from scipy import sparse  # noqa: PLC0415

    vocabulary: dict[str, int] = {}
    d = sparse_matrix(doc_weights, vocabulary, grow=True)
    q = sparse_matrix(query_weights, vocabulary, grow=False)
    docs = sparse.csr_matrix((np.asarray(d[2], np.float64), (d[0], d[1])), shape=(len(doc_weights), len(vocabulary)))
    queries = sparse.csr_matrix((np.asarray(q[2], np.float64), (q[0], q[1])),
                                shape=(len(query_weights), len(vocabulary)))
    scores = (queries @ docs.T).toarray()
    run: Run = {}
    for row, qid in zip(scores, qids):
        hits = np.flatnonzero(row > 0)
        run[qid] = _top(row[hits], [docids[i] for i in hits], k) if hits.size else {}
    return run


# -- metrics --------------------------------------------------------------------------------------------------
def _ranked(hits: dict[str, float]) -> list[str]:
    # trec_eval orders by score descending, then by document id descending.
    return [d for d, _ in sorted(hits.items(), key=lambda x: (-x[1], _neg(x[0])))]


def _neg(docid: str):
    return tuple(-ord(c) for c in docid) + (1,)  # descending string order


def ndcg_per_query(run: Run, qrels: dict[str, dict[str, int]], k: int = 10) -> dict[str, float]:
    out = {}
    for qid, judged in qrels.items():
        gains = sorted((g for g in judged.values() if g > 0), reverse=True)
        if not gains:
            continue
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))
        ranked = _ranked(run.get(qid, {}))[:k]
        dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        out[qid] = dcg / ideal
    return out


def recall_per_query(run: Run, qrels: dict[str, dict[str, int]], k: int = 100) -> dict[str, float]:
    out = {}
    for qid, judged in qrels.items():
        relevant = {d for d, g in judged.items() if g > 0}
        if not relevant:
            continue
        ranked = _ranked(run.get(qid, {}))[:k]
        out[qid] = len(relevant.intersection(ranked)) / len(relevant)
    return out


def metrics(run: Run, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    ndcg = ndcg_per_query(run, qrels)
    recall = recall_per_query(run, qrels)
    return {"ndcg@10": float(np.mean(list(ndcg.values()))), "recall@100": float(np.mean(list(recall.values())))}


def oracle(per_query: Sequence[dict[str, float]]) -> float:
    """Mean over queries of the best score any of the configurations reached for that query."""
    qids = set().union(*per_query)
    return float(np.mean([max(p.get(q, 0.0) for p in per_query) for q in qids]))


# -- one model on one collection --------------------------------------------------------------------------------
def evaluate_model(model, corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]],
                   doc_reps=None, query_reps=None) -> tuple[dict[str, dict[str, float]], dict[str, Run]]:
    """sparse / dense single / dense multi / hybrid (dense single + sparse) / hybrid-multi (dense multi +
    sparse) metrics of a ``DiffRetriever`` (corpus values are full document texts, already ``title. text``)."""
    docids = list(corpus)
    qids = [q for q in qrels if q in queries]
    if doc_reps is None:
        doc_reps = model.encode(list(corpus.values()), side="document")
    if query_reps is None:
        query_reps = model.encode([queries[q] for q in qids], side="query")
    runs = {
        "sparse": sparse_search(query_reps.weights, doc_reps.weights, qids, docids),
        "dense-single": dense_search(query_reps.dense, doc_reps.dense, qids, docids),
        "dense-multi": maxsim_search(query_reps.slots, doc_reps.slots, qids, docids),
    }
    runs["hybrid"] = hybrid(runs["dense-single"], runs["sparse"])
    runs["hybrid-multi"] = hybrid(runs["dense-multi"], runs["sparse"])
    judged = {q: qrels[q] for q in qids}
    return {name: metrics(run, judged) for name, run in runs.items()}, runs
