"""Compare two DiffRetriever models (an ONNX export against its torch source) on sample texts.

Both models see the same prompt batches (same tokenizer, same config); the comparison covers the raw
runtime outputs and the shared post-processing:

- slot vectors: per slot ``||a - b|| / ||b||`` (absolute where the reference slot is zero), maximum;
- dense single vectors: the same per text, maximum;
- term weights: maximum absolute difference of the float weights;
- impact dicts (``round(w * scale)``): the fraction of entries (union of both dicts' keys) whose integer
  differs, and the largest integer difference. fp32 differs only where a weight sits on a rounding
  boundary: at most 1, on < 0.1% of entries.

Limits per precision: fp32 1e-4 relative (vectors), < 0.1% differing impacts; fp16 2e-2 relative,
impacts reported only; int8w (weight-only) 5e-2 relative, impacts reported only; int8 and int4w reported
only (judge them by retrieval quality).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from pyserini_diffret.core.representations import pool_content_scores, quantise, single_vectors

SAMPLE_QUERIES = [
    "what reduces the risk of heart attack",
    "vitamin d bone fractures",
    "shock waves on a swept wing",
    "enzymes",
    "How does protein folding determine the function of enzymes inside the cell?",
    "Is swimming good exercise for cardiovascular health in older adults with diabetes?",
    "boundary layer transition",
]

SAMPLE_PASSAGES = [
    "Aspirin reduces the risk of heart attack in adults with diabetes.",
    "Vitamin D deficiency is associated with bone fractures and weak muscles.",
    "Supersonic flow produces shock waves that heat the surface of the aircraft.",
    "Protein folding.",
    "Airflow over a swept wing changes the boundary layer transition point; " * 6,
    "Running, jumping and swimming are exercises that improve cardiovascular health. "
    "A randomised trial followed 1,204 adults for five years and measured blood pressure, resting heart "
    "rate and the incidence of heart attack; the exercise group fared better on every measure.",
    "A query asks for documents; a passage answers it in a retrieval task.",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "bone",
]

LIMITS: dict[str, dict[str, float | None]] = {
    "fp32": {"slot_rel": 1e-4, "dense_rel": 1e-4, "impact_fraction": 1e-3, "impact_max_diff": 1},
    "fp16": {"slot_rel": 2e-2, "dense_rel": 2e-2, "impact_fraction": None, "impact_max_diff": None},
    "int8": {"slot_rel": None, "dense_rel": None, "impact_fraction": None, "impact_max_diff": None},
    # Weight-only 8 bits: ~1e-2 on MiniLM-L6 (GPTQ), ~3e-3 on the tiny random test models; the limit
    # catches a broken export, not a slightly worse rounding.
    "int8w": {"slot_rel": 5e-2, "dense_rel": 5e-2, "impact_fraction": None, "impact_max_diff": None},
    "int4w": {"slot_rel": None, "dense_rel": None, "impact_fraction": None, "impact_max_diff": None},
}


@dataclass
class SideReport:
    side: str
    k: int
    texts: int
    slot_rel_error: float = 0.0
    dense_rel_error: float = 0.0
    term_abs_error: float = 0.0
    impact_entries: int = 0
    impact_differing: int = 0
    impact_max_diff: int = 0

    @property
    def impact_fraction(self) -> float:
        return self.impact_differing / self.impact_entries if self.impact_entries else 0.0


@dataclass
class VerificationReport:
    precision: str
    sides: list[SideReport]
    limits: dict[str, float | None]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def worst(self, name: str) -> float:
        return max((getattr(s, name) for s in self.sides), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "failures": list(self.failures),
            "limits": dict(self.limits),
            "sides": [dict(asdict(s), impact_fraction=s.impact_fraction) for s in self.sides],
        }

    def format(self) -> str:
        lines = [f"verification ({self.precision}) against torch: {'PASSED' if self.passed else 'FAILED'}"]
        header = f"  {'side':<8}{'K':>3}{'texts':>6}  {'slot rel':>9}  {'dense rel':>9}  {'term abs':>9}  impacts differing"
        lines.append(header)
        for s in self.sides:
            lines.append(
                f"  {s.side:<8}{s.k:>3}{s.texts:>6}  {s.slot_rel_error:9.2e}  {s.dense_rel_error:9.2e}  "
                f"{s.term_abs_error:9.2e}  {s.impact_differing}/{s.impact_entries} "
                f"({100 * s.impact_fraction:.3f}%), max diff {s.impact_max_diff}"
            )
        limits = ", ".join(f"{k} <= {v}" for k, v in self.limits.items() if v is not None) or "none (report only)"
        lines.append(f"  limits: {limits}")
        lines.extend(f"  FAIL: {failure}" for failure in self.failures)
        return "\n".join(lines)


def relative_errors(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-vector ``||a - b|| / ||b||`` over the last axis; absolute error where ``b`` is zero."""
    diff = np.linalg.norm(candidate.astype(np.float64) - reference, axis=-1)
    norm = np.linalg.norm(reference.astype(np.float64), axis=-1)
    return np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), diff)


def compare_impacts(candidate: tuple[list[np.ndarray], list[np.ndarray]],
                    reference: tuple[list[np.ndarray], list[np.ndarray]]) -> tuple[int, int, int]:
    """(entries in the union of terms, entries whose impacts differ, largest difference) of two ``quantise``
    results (per text: vocabulary ids and impacts)."""
    entries = differing = largest = 0
    for ids_a, values_a, ids_b, values_b in zip(*candidate, *reference):
        a = dict(zip(ids_a.tolist(), values_a.tolist()))
        b = dict(zip(ids_b.tolist(), values_b.tolist()))
        for term in a.keys() | b.keys():
            entries += 1
            gap = abs(a.get(term, 0) - b.get(term, 0))
            if gap:
                differing += 1
                largest = max(largest, gap)
    return entries, differing, largest


def compare_models(candidate, reference, *, precision: str = "fp32", queries: Sequence[str] | None = None,
                   passages: Sequence[str] | None = None, batch_size: int = 4,
                   stop_truncation: bool | None = None) -> VerificationReport:
    """Run both models' runtimes on the same batches and measure how far ``candidate`` is from ``reference``."""
    if precision not in LIMITS:
        raise ValueError(f"unknown precision {precision!r}; one of {sorted(LIMITS)}")
    stop = candidate.config.stop_truncation if stop_truncation is None else stop_truncation
    sides = []
    for side, texts, k in (("query", queries or SAMPLE_QUERIES, candidate.k_query),
                           ("document", passages or SAMPLE_PASSAGES, candidate.k_doc)):
        texts = list(texts)
        report = SideReport(side=side, k=k, texts=len(texts))
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            batch = candidate.prompts.build(chunk, side, k)
            ids = candidate.content.ids(chunk)
            vectors, scores = candidate.runtime.run(batch, ids, stop)
            ref_vectors, ref_scores = reference.runtime.run(batch, ids, stop)
            weights, ref_weights = (pool_content_scores(s, candidate.config.terms_per_slot) for s in (scores, ref_scores))
            report.slot_rel_error = max(report.slot_rel_error, float(relative_errors(vectors, ref_vectors).max()))
            dense = relative_errors(single_vectors(vectors), single_vectors(ref_vectors))
            report.dense_rel_error = max(report.dense_rel_error, float(dense.max()))
            report.term_abs_error = max(report.term_abs_error, float(np.abs(weights - ref_weights).max()))
            scale, rule = candidate.config.scale, candidate.config.quantisation
            entries, differing, largest = compare_impacts(quantise(weights, ids, scale, rule),
                                                          quantise(ref_weights, ids, scale, rule))
            report.impact_entries += entries
            report.impact_differing += differing
            report.impact_max_diff = max(report.impact_max_diff, largest)
        sides.append(report)
    limits = LIMITS[precision]
    result = VerificationReport(precision=precision, sides=sides, limits=dict(limits))
    for s in sides:
        checks = (
            ("slot_rel", s.slot_rel_error, "slot vectors: relative error"),
            ("dense_rel", s.dense_rel_error, "dense vectors: relative error"),
            ("impact_fraction", s.impact_fraction, "impact entries: fraction differing"),
            ("impact_max_diff", s.impact_max_diff, "impact entries: largest difference"),
        )
        for key, value, what in checks:
            limit = limits.get(key)
            strict = key == "impact_fraction"  # "< 0.1%"; the other limits are inclusive
            if limit is not None and (value >= limit if strict else value > limit):
                result.failures.append(f"{s.side}: {what} {value:.3g} exceeds the {precision} limit {limit}")
    return result
