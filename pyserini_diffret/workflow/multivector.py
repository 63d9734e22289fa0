"""Multi-vector (the paper's MaxSim mode) search over the slot store.

``s(q, d) = sum_i max(0, max_j q_i . d_j)`` over the K_q query slots and K_p document slots.
Two stages: (1) candidate generation: every non-zero query slot retrieves its ``candidates`` nearest slot
vectors from a FAISS inner-product index over all documents' slots; their documents form the candidate
set; (2) exact MaxSim of the query against every candidate's slots (read from the memory-mapped store),
sorted by score (ties by corpus order). With the default exact (``Flat``) slot index, the top
``exact_top`` (10) hits are provably the brute-force MaxSim top hits: the candidate depth of a query grows
until no unretrieved document can beat its 10th hit (see ``batch_search_slots``); further hits are exact
MaxSim scores of the candidates. ``brute_force`` scores every document (for checks).

Command (Pyserini's ``search.faiss`` syntax)::

    python -m pyserini_diffret.search_multi --index OUT/slots --topics Q.tsv --encoder diffret \\
        --output RUN --hits 1000 [--candidates 1000] [--index-factory Flat] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pyserini_diffret.core.representations import maxsim

DEFAULT_CANDIDATES = 1000
DEFAULT_EXACT_TOP = 10
_ROWS = 65536


@dataclass
class Hit:
    docid: str
    score: float


class SlotStore:
    """The ``slots`` folder of an encoded corpus: ``[N, K, H]`` vectors (memory-mapped) and ids."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder}: not a slot store (no meta.json); encode with "
                                    "python -m pyserini_diffret.encode (representation 'slots')")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.count, self.k, self.dim = int(meta["count"]), int(meta["k"]), int(meta["dim"])
        self.dtype = np.dtype(meta["dtype"])
        self.docids = (self.folder / "docid").read_text(encoding="utf-8").splitlines()
        if len(self.docids) != self.count:
            raise ValueError(f"{self.folder}: {len(self.docids)} ids for {self.count} documents")
        path = self.folder / meta["vectors"]
        expected = self.count * self.k * self.dim * self.dtype.itemsize
        if path.stat().st_size != expected:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {expected}")
        self.vectors = np.memmap(path, dtype=self.dtype, mode="r", shape=(self.count, self.k, self.dim)) \
            if self.count else np.zeros((0, self.k, self.dim), self.dtype)

    def slots(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[np.asarray(rows)], dtype=np.float32)


def _sorted_hits(scores: np.ndarray, rows: np.ndarray, docids: Sequence[str], k: int) -> list[Hit]:
    order = np.lexsort((rows, -scores))[:k]  # score descending, then corpus order
    return [Hit(docids[rows[i]], float(scores[i])) for i in order]


class MultiVectorSearcher:
    """MaxSim search: FAISS candidates over all slot vectors, then exact re-scoring."""

    def __init__(self, slots_dir: str | Path, query_encoder=None, candidates: int = DEFAULT_CANDIDATES,
                 index_factory: str = "Flat", threads: int | None = None, exact_top: int = DEFAULT_EXACT_TOP) -> None:
        import faiss  # noqa: PLC0415

        self.store = SlotStore(slots_dir)
        self.query_encoder = query_encoder
        self.candidates = candidates
        self.exact_top = exact_top
        if threads:
            faiss.omp_set_num_threads(threads)
        self.index = self._build_index(faiss, index_factory)

    def _build_index(self, faiss, factory: str):
        dim = self.store.dim
        if factory == "Flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        flat = self.store.vectors.reshape(-1, dim)
        if not index.is_trained:
            sample = np.asarray(flat[:: max(1, len(flat) // 100_000)], dtype=np.float32)
            index.train(sample)
        for start in range(0, len(flat), _ROWS):
            index.add(np.ascontiguousarray(flat[start:start + _ROWS], dtype=np.float32))
        return index

    # -- with slot vectors -------------------------------------------------------------------------
    def batch_search_slots(self, query_slots: np.ndarray, k: int = 1000) -> list[list[Hit]]:
        """``query_slots``: ``float32 [B, K_q, H]``; returns the top ``k`` hits per query.

        With an exact (``Flat``) slot index the top ``exact_top`` hits are guaranteed to be the true MaxSim
        top hits: a document none of whose slots was retrieved for query slot ``i`` has
        ``max_j q_i . d_j <= tau_i`` (the score of the last slot retrieved for it), so no unseen document can
        beat ``sum_i max(0, tau_i)``; while the ``exact_top``-th candidate scores below that bound, the
        candidate depth grows (x4) for that query, up to the whole index. It also grows until the candidates
        hold ``k`` documents (or all of them), so that a run has ``k`` hits per query.
        """
        query_slots = np.asarray(query_slots, dtype=np.float32)
        if query_slots.ndim != 3 or query_slots.shape[2] != self.store.dim:
            raise ValueError(f"query slots must be [B, K_q, {self.store.dim}], got {query_slots.shape}")
        b, kq, dim = query_slots.shape
        results: list[list[Hit]] = [[] for _ in range(b)]
        if self.store.count == 0 or b == 0:
            return results
        live = np.any(query_slots != 0, axis=2)  # zeroed (truncated) query slots add nothing
        pending = [i for i in range(b) if live[i].any()]
        depth = min(max(self.candidates, 1), self.index.ntotal)
        while pending:
            flat = np.ascontiguousarray(query_slots[pending].reshape(len(pending) * kq, dim))
            scores, found = self.index.search(flat, depth)
            scores, found = scores.reshape(len(pending), kq, depth), found.reshape(len(pending), kq, depth)
            still = []
            for row, i in enumerate(pending):
                hits, bound = self._rescore(query_slots[i], live[i], scores[row], found[row], depth, k)
                need = min(self.exact_top, k, self.store.count)
                exact = not self.exact_top or (len(hits) >= need and hits[need - 1].score >= bound)
                filled = len(hits) >= min(k, self.store.count)
                complete = depth >= self.index.ntotal or (exact and filled)
                if complete:
                    results[i] = hits
                else:
                    still.append(i)
            pending = still
            depth = min(depth * 4, self.index.ntotal)
        return results

    def _rescore(self, query: np.ndarray, live: np.ndarray, scores: np.ndarray, found: np.ndarray, depth: int,
                 k: int) -> tuple[list[Hit], float]:
        rows = found[live].ravel()
        rows = rows[rows >= 0]
        docs = np.unique(rows // self.store.k)
        bound = 0.0
        for slot in np.flatnonzero(live):
            if found[slot, -1] >= 0:  # the list is full: unseen slots score at most its last score
                bound += max(0.0, float(scores[slot, -1]))
        if docs.size == 0:
            return [], bound
        return _sorted_hits(self._maxsim(query, docs), docs, self.store.docids, k), bound

    def _maxsim(self, query_slots: np.ndarray, rows: np.ndarray, chunk: int = 1024) -> np.ndarray:
        if rows.size == 0:
            return np.zeros(0, np.float32)
        return np.concatenate([maxsim(query_slots, self.store.slots(rows[s:s + chunk]))
                               for s in range(0, rows.size, chunk)])

    def brute_force(self, query_slots: np.ndarray, k: int = 1000, chunk: int = 4096) -> list[Hit]:
        """Exact MaxSim against every document (slow; for checks)."""
        query_slots = np.asarray(query_slots, dtype=np.float32)
        scores = self._maxsim(query_slots, np.arange(self.store.count), chunk)
        return _sorted_hits(scores, np.arange(self.store.count), self.store.docids, k)

    # -- with texts --------------------------------------------------------------------------------
    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 1000) -> dict[str, list[Hit]]:
        if self.query_encoder is None:
            raise ValueError("this searcher has no query encoder; use batch_search_slots")
        slots = self.query_encoder.encode_slots(list(queries))
        return dict(zip(qids, self.batch_search_slots(slots, k)))

    def search(self, query: str, k: int = 1000) -> list[Hit]:
        return self.batch_search([query], ["q"], k)["q"]


class SlotQueryEncoder:
    """Query slot vectors from a loaded model (shares the process-wide model and query cache)."""

    def __init__(self, model_name: str = "diffret", device: str = "cpu", model=None) -> None:
        from pyserini_diffret.shared import shared_model  # noqa: PLC0415

        self.model = model if model is not None else shared_model(model_name, device)

    def encode_slots(self, texts: Sequence[str]) -> np.ndarray:
        from pyserini_diffret.shared import query_cache  # noqa: PLC0415

        items = query_cache(self.model).get(list(texts))
        if not items:
            return np.zeros((0, self.model.k_query, self.model.hidden_size), np.float32)
        return np.stack([item.slots for item in items]).astype(np.float32, copy=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyserini_diffret.search_multi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="the slots folder of an encoded corpus (OUT/slots)")
    parser.add_argument("--topics", required=True, help="queries: TSV qid<TAB>text, or BEIR queries.jsonl")
    parser.add_argument("--encoder", default="diffret", help="'diffret' or a model folder (as used to encode)")
    parser.add_argument("--encoder-class", choices=["diffret"], default=None)
    parser.add_argument("--output", required=True)
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help="slot vectors retrieved per query slot in the candidate stage")
    parser.add_argument("--index-factory", default="Flat", help="FAISS factory string for the slot index")
    parser.add_argument("--exact-top", type=int, default=DEFAULT_EXACT_TOP,
                        help="hits guaranteed equal to brute-force MaxSim with a Flat index (0: no check)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-tag", default="diffret-multi")
    args = parser.parse_args(argv)
    from pyserini_diffret.workflow.collection import InputError, read_topics  # noqa: PLC0415
    from pyserini_diffret.workflow.trec import write_run  # noqa: PLC0415

    try:
        topics = read_topics(args.topics)
        encoder = SlotQueryEncoder(args.encoder, device=args.device)
        started = time.perf_counter()
        searcher = MultiVectorSearcher(args.index, encoder, candidates=args.candidates,
                                       index_factory=args.index_factory, threads=args.threads,
                                       exact_top=args.exact_top)
        results: dict[str, list[Hit]] = {}
        qids = list(topics)
        for s in range(0, len(qids), args.batch_size):
            batch = qids[s:s + args.batch_size]
            results.update(searcher.batch_search([topics[q] for q in batch], batch, args.hits))
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_run(results, args.output, args.run_tag, args.hits)  # hits in the searcher's order
    print(f"searched {len(qids)} queries in {time.perf_counter() - started:.1f} s -> {args.output}")
    return 0
