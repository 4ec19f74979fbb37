"""Ranking stage: candidate retrieval for large catalogs — each source's own top-N, then the union.

Reads each source's Retrieved (its filtered top-N item_idx, its unfiltered top-N scores and a
scorer of given items); writes the same CandidateScores as build_candidates does from dense
(n, n_items) matrices, without any source materialising such a matrix for the blend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from recsys.ranking.base import Query, Recommender, apply_exclusions
from recsys.ranking.candidates import NEUTRAL, CandidateScores, normalize

ItemScorer = Callable[[np.ndarray], np.ndarray]  # items (q, C), -1 pads -> raw (q, C) float32


@dataclass(frozen=True)
class Retrieved:
    """One source's answer for a batch of q queries at N candidates each."""

    ids: np.ndarray  # (q, N) int64: top-N item_idx after exclusions / allow-mask; -1 pads
    reference: np.ndarray  # (q, N) float32: top-N scores before any filtering; -inf pads
    score_items: ItemScorer  # this source's raw score of given items; -inf = no score


def dense_retrieve(
    scores: np.ndarray,
    n: int,
    exclude: Sequence[np.ndarray] | None,
    allowed: np.ndarray | None,
) -> Retrieved:
    """Retrieved from a dense (q, n_items) score matrix: the default of a source without its
    own retrieval, and collab's exact MIPS. Without an allow-mask one partition serves both the
    reference and the ids (the filtered top-n lies in the unfiltered top n + most excluded)."""
    scores = np.asarray(scores, dtype=np.float32)
    q, n_items = scores.shape
    top = min(n, n_items)
    scorer = partial(_gather, scores)
    if top == 0:
        return Retrieved(np.full((q, 0), -1, np.int64), np.zeros((q, 0), np.float32), scorer)
    if allowed is not None:  # the mask may leave few items: filter the whole matrix
        filtered = scores.copy()
        apply_exclusions(filtered, exclude, allowed)
        reference = _sorted_top(scores, top)[1]
        best, values = _sorted_top(filtered, top)
        return Retrieved(np.where(np.isfinite(values), best, -1), reference, scorer)
    extra = max((np.size(e) for e in exclude), default=0) if exclude is not None else 0
    best, values = _sorted_top(scores, min(top + extra, n_items))  # (q, m) best first
    best = np.where(np.isfinite(values), best, -1)
    ids = first_valid(sparse_exclusions(best, exclude, None), top)
    return Retrieved(ids, values[:, :top], scorer)


def _sorted_top(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m best columns of each row, best first: item_idx (q, m) int64, scores (q, m)."""
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, 1).astype(np.int64), np.take_along_axis(values, order, 1)


def _gather(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """scores (q, n_items) at items (q, C); -inf where items are -1 or beyond n_items."""
    ok = (items >= 0) & (items < scores.shape[1])
    raw = np.take_along_axis(scores, np.where(ok, items, 0), axis=1)
    raw[~ok] = -np.inf
    return raw.astype(np.float32, copy=False)


def sparse_exclusions(
    ids: np.ndarray,
    exclude: Sequence[np.ndarray] | None,
    allowed: np.ndarray | None,
) -> np.ndarray:
    """ids (q, m) with excluded / disallowed items set to -1 (the same rules as apply_exclusions
    on a dense matrix)."""
    ids = np.array(ids, dtype=np.int64, copy=True)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        inside = (ids >= 0) & (ids < allowed.size)
        ids[inside & ~allowed[np.where(inside, ids, 0)]] = -1
    for row, items in enumerate(() if exclude is None else exclude):
        ids[row, np.isin(ids[row], np.asarray(items, dtype=np.int64))] = -1
    return ids


def first_valid(ids: np.ndarray, n: int) -> np.ndarray:
    """The first n entries >= 0 of each row of ids (q, m), in order, -1 padded. (q, n)."""
    keep = ids >= 0
    rank = np.cumsum(keep, axis=1) - 1  # position among the kept of the row
    out = np.full((ids.shape[0], n), -1, dtype=np.int64)
    rows, cols = np.nonzero(keep & (rank < n))
    out[rows, rank[rows, cols]] = ids[rows, cols]
    return out


def union_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Per row, the distinct item_idx >= 0 of all parts (each (q, m_s)), ascending, -1 padded.
    (q, C) int64 with C the largest union (at least 1), as build_candidates lays them out."""
    q = parts[0].shape[0] if parts else 0
    ids = np.sort(np.concatenate([np.asarray(p, np.int64) for p in parts], axis=1), axis=1)
    keep = ids >= 0
    keep[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    counts = keep.sum(axis=1)
    out = np.full((q, max(int(counts.max(initial=0)), 1)), -1, dtype=np.int64)
    rows, cols = np.nonzero(keep)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out[rows, np.arange(rows.size) - starts[rows]] = ids[rows, cols]
    return out


def candidates_from_retrieved(
    retrieved: Sequence[tuple[np.ndarray, Retrieved] | None], n: int, per_source: int, method: str
) -> CandidateScores:
    """CandidateScores of n queries from each source's (rows it serves (q_s,), Retrieved), or
    None for a source that serves none: the union of the sources' ids, each source's raw scores
    on it normalised by its own unfiltered top-N, exactly as build_candidates does densely."""
    if method not in NEUTRAL:
        raise ValueError(f"normalize: expected one of {sorted(NEUTRAL)}, found {method!r}")
    ids = []
    for part in retrieved:
        full = np.full((n, per_source), -1, dtype=np.int64)
        if part is not None:
            rows, got = part
            full[rows, : got.ids.shape[1]] = got.ids
        ids.append(full)
    items = union_rows(ids)  # (n, C)
    raw = np.full((len(retrieved), n, items.shape[1]), -np.inf, dtype=np.float32)  # (S, n, C)
    references = np.full((len(retrieved), n, per_source), -np.inf, dtype=np.float32)
    for s, part in enumerate(retrieved):
        if part is None:
            continue
        rows, got = part
        raw[s, rows] = got.score_items(items[rows])
        references[s, rows, : got.reference.shape[1]] = got.reference
    raw[:, items < 0] = -np.inf
    normalized = np.stack(
        [normalize(r, ref, method) for r, ref in zip(raw, references, strict=True)]
    )
    available = np.isfinite(raw).any(axis=2).T  # (n, S)
    return CandidateScores(items, raw, normalized, available)


def retrieve_candidates(
    sources: Sequence[Recommender],
    uses: Sequence[Sequence[int]],
    queries: Sequence[Query],
    per_source: int,
    exclude: Sequence[np.ndarray] | None,
    allowed: np.ndarray | None,
    method: str,
) -> CandidateScores:
    """CandidateScores of a batch of queries from each source's own top-`per_source`
    (Recommender.retrieve) on the rows `uses[s]` it serves; `allowed` (n_items,) covers the
    blend's whole catalog and each source gets its own prefix of it."""
    parts: list[tuple[np.ndarray, Retrieved] | None] = []
    for source, rows in zip(sources, uses, strict=True):
        if not len(rows):
            parts.append(None)
            continue
        sub_exclude = None if exclude is None else [exclude[i] for i in rows]
        mask = None if allowed is None else np.asarray(allowed, dtype=bool)[: source.n_items]
        got = source.retrieve([queries[i] for i in rows], per_source, sub_exclude, mask)
        parts.append((np.asarray(rows, dtype=np.int64), got))
    return candidates_from_retrieved(parts, len(queries), per_source, method)
