"""Ranking stage: candidate generation and per-source score normalisation for the blend.

Reads one (n, n_items) score matrix per source; writes a CandidateScores: per query the union of
each source's top-N (after exclusions) and every source's score on it, normalised per source by
the statistics of that source's own top-N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recsys.ranking.base import apply_exclusions

# What a normalised score is when the source has no opinion on a candidate (or is constant).
NEUTRAL = {"zscore": 0.0, "minmax": 0.5, "rank": 0.5}


@dataclass(frozen=True)
class CandidateScores:
    """Candidates of a batch of queries. C = the largest candidate set in the batch."""

    items: np.ndarray  # (n, C) int64 item_idx ascending per row, padded with -1 at the end
    raw: np.ndarray  # (n_sources, n, C) float32 source scores; -inf = no score (or padding)
    normalized: np.ndarray  # (n_sources, n, C) float32; missing scores hold the NEUTRAL value
    available: np.ndarray  # (n, n_sources) bool: the source scores at least one candidate

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0  # (n, C)

    def rows(self, rows: np.ndarray) -> CandidateScores:
        """The candidates of these queries only (rows: indices into the batch)."""
        return CandidateScores(
            self.items[rows], self.raw[:, rows], self.normalized[:, rows], self.available[rows]
        )

    @cached_property
    def normalized64(self) -> np.ndarray:
        """normalized as float64, converted once however often these candidates are blended
        (the weight search blends them once per grid point)."""
        return self.normalized.astype(np.float64)


def build_candidates(
    source_scores: Sequence[np.ndarray],
    per_source: int,
    exclude: Sequence[np.ndarray] | None,
    allowed: np.ndarray | None,
    method: str,
) -> CandidateScores:
    """Union of each source's top-`per_source` (exclusions applied), each source's scores on it
    normalised by the statistics of its own unfiltered top-`per_source` (its reference set).

    The reference ignores exclusions and the allow-mask on purpose: an item's normalised score
    then does not depend on which other items are excluded, so excluding items never reorders
    the rest, and score() agrees with recommend()."""
    if method not in NEUTRAL:
        raise ValueError(f"normalize: expected one of {sorted(NEUTRAL)}, found {method!r}")
    unfiltered = [np.asarray(s, dtype=np.float32) for s in source_scores]  # each (n, n_items)
    n, n_items = unfiltered[0].shape
    top = min(per_source, n_items)
    chosen = np.zeros((n, n_items), dtype=bool)
    references = []
    for matrix in unfiltered:
        references.append(_top_values(matrix, top))  # (n, top), -inf padded
        filtered = matrix.copy()
        apply_exclusions(filtered, exclude, allowed)
        best = np.argpartition(-filtered, top - 1, axis=1)[:, :top]  # (n, top) unordered
        finite = np.isfinite(np.take_along_axis(filtered, best, axis=1))
        rows = np.broadcast_to(np.arange(n)[:, None], best.shape)
        chosen[rows[finite], best[finite]] = True
    items = rows_of_true(chosen)  # (n, C)
    safe = np.where(items >= 0, items, 0)
    raw = np.stack([np.take_along_axis(m, safe, axis=1) for m in unfiltered])  # (S, n, C)
    raw[:, items < 0] = -np.inf
    normalized = np.stack(
        [normalize(r, ref, method) for r, ref in zip(raw, references, strict=True)]
    )  # (S, n, C)
    available = np.isfinite(raw).any(axis=2).T  # (n, S)
    return CandidateScores(items, raw, normalized, available)


def _top_values(matrix: np.ndarray, top: int) -> np.ndarray:
    """The `top` largest values of each row (unordered). (n, top)."""
    part = np.argpartition(-matrix, top - 1, axis=1)[:, :top]
    return np.take_along_axis(matrix, part, axis=1)


def rows_of_true(mask: np.ndarray) -> np.ndarray:
    """Column indices of True per row, ascending, padded with -1. (n, max count) int64."""
    counts = mask.sum(axis=1)
    width = max(int(counts.max(initial=0)), 1)
    out = np.full((mask.shape[0], width), -1, dtype=np.int64)
    rows, cols = np.nonzero(mask)  # row-major: ascending columns within each row
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out[rows, np.arange(rows.size) - starts[rows]] = cols
    return out


def normalize(raw: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    """Normalise each row of `raw` (n, C) by the finite values of the same row of `reference`
    (n, m): zscore by their mean and std, minmax by their range, rank as the share of them below
    (ties count half). Non-finite raw entries and degenerate references get the neutral value."""
    finite = np.isfinite(raw)
    x = np.where(finite, raw, 0.0).astype(np.float64)  # (n, C)
    ref_ok = np.isfinite(reference)
    ref = np.where(ref_ok, reference, 0.0).astype(np.float64)  # (n, m)
    count = np.maximum(ref_ok.sum(axis=1, keepdims=True), 1)  # (n, 1)
    out = np.full(raw.shape, NEUTRAL[method], dtype=np.float64)
    if method == "zscore":
        mean = ref.sum(axis=1, keepdims=True) / count
        std = np.sqrt((np.where(ref_ok, ref - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
        np.divide(x - mean, std, out=out, where=std > 1e-12)
    elif method == "minmax":
        low = np.where(ref_ok, ref, np.inf).min(axis=1, keepdims=True)
        span = np.where(ref_ok, ref, -np.inf).max(axis=1, keepdims=True) - low
        np.divide(x - low, span, out=out, where=np.isfinite(span) & (span > 1e-12))
    else:  # rank
        for row in range(raw.shape[0]):
            values = np.sort(ref[row, ref_ok[row]])  # (m,)
            if values.size > 1:
                below = np.searchsorted(values, x[row], "left")  # (C,)
                upto = np.searchsorted(values, x[row], "right")
                out[row] = (below + upto) / (2.0 * values.size)
    out[~finite] = NEUTRAL[method]
    return out.astype(np.float32)


def blend_scores(cands: CandidateScores, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of normalised scores. weights: (n, S) per-query source weights (rows that sum
    to 0 fall back to equal weights over available sources). Returns blended (n, C) with -inf on
    padding and queries no source can score, and the effective weights (n, S)."""
    w = np.where(cands.available, np.asarray(weights, dtype=np.float64), 0.0)  # (n, S)
    total = w.sum(axis=1, keepdims=True)
    equal = cands.available / np.maximum(cands.available.sum(axis=1, keepdims=True), 1)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), equal)  # (n, S) rows sum to 1
    blended = np.einsum("ns,snc->nc", w, cands.normalized64)  # (n, C)
    blended[~cands.valid | ~cands.available.any(axis=1, keepdims=True)] = -np.inf
    return blended.astype(np.float32), w.astype(np.float32)
