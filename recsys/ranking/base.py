"""Ranking stage: the one interface every recommender implements (implicit's RecommenderBase idea).

A recommender scores queries against the whole catalog; `recommend` turns scores into top-k with
exclusions and an allow-mask, so every implementation ranks, pads and excludes the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recsys.ranking.retrieval import Retrieved

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Query:
    """Who we recommend for: a known user, a history of item indices, profile text, or nothing."""

    user_idx: int = -1  # -1: cold or anonymous
    history: np.ndarray = field(default_factory=lambda: _EMPTY)  # item_idx, oldest -> newest
    profile_text: str | None = None

    @property
    def is_known(self) -> bool:
        return self.user_idx >= 0


class Recommender(ABC):
    """Scores (n_queries, n_items); recommend() = score + exclude + top-k, shared by all."""

    n_items: int

    @abstractmethod
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items) float32 scores; -inf where this recommender cannot score."""

    @abstractmethod
    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items most like item_idx (itself excluded): item_idx (k,), scores (k,)."""

    @abstractmethod
    def save(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Recommender: ...

    def bind(self, sources: Mapping[str, Recommender]) -> None:
        """Called by the blend with all its sources; a source that reads another one's arrays
        (recsys.ranking.text_neighbors) takes them here. Most need nothing."""
        return None

    def check_item(self, item_idx: int) -> None:
        """IndexError unless item_idx is in this recommender's catalog (similar_items' input)."""
        if not 0 <= item_idx < self.n_items:
            raise IndexError(f"item_idx {item_idx} out of range: catalog has {self.n_items} items")

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """Top-n candidates for the blend's retrieval path (recsys.ranking.retrieval). This
        default scores the whole catalog; sources with an index, factors or a fixed order
        override it."""
        from recsys.ranking.retrieval import dense_retrieve  # that module imports this one

        return dense_retrieve(self.score(queries), n, exclude, allowed)

    def recommend(
        self,
        queries: Sequence[Query],
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query. Returns item_idx (n, k) int64 padded with -1 and scores (n, k) float32
        padded with -inf. `exclude[i]` are item indices never returned for query i; `allowed` is a
        bool mask (n_items,) of items that may be returned."""
        scores = np.array(self.score(queries), dtype=np.float32, copy=True)  # (n, n_items)
        apply_exclusions(scores, exclude, allowed)
        return top_k(scores, k)


def top_similar(scores: np.ndarray, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """similar_items' answer from (1, n_items) scores of items like item_idx: the top-k with
    item_idx itself excluded, item_idx (k,) and scores (k,) padded as top_k pads."""
    apply_exclusions(scores, [np.array([item_idx])], None)
    ids, vals = top_k(scores, k)
    return ids[0], vals[0]


def apply_exclusions(
    scores: np.ndarray, exclude: Sequence[np.ndarray] | None, allowed: np.ndarray | None
) -> None:
    """Set excluded and disallowed items to -inf in place. scores: (n, n_items)."""
    if allowed is not None:
        scores[:, ~np.asarray(allowed, dtype=bool)] = -np.inf
    if exclude is not None:
        for row, items in enumerate(exclude):
            items = np.asarray(items, dtype=np.int64)
            items = items[(items >= 0) & (items < scores.shape[1])]
            scores[row, items] = -np.inf


_BLOCK = 64  # columns per block in the candidate pre-selection of top_k


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k columns per row, descending, ties broken by lower item_idx; -inf entries become -1."""
    n, n_items = scores.shape
    kk = min(k, n_items)
    if kk == 0 or n == 0:
        return np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32)
    cols, outside_max = _candidate_columns(scores, kk)  # (n, m) holding each row's top kk
    sub = scores if cols is None else np.take_along_axis(scores, cols, axis=1)  # (n, m)
    part = np.argpartition(-sub, kk - 1, axis=1)[:, :kk]  # (n, kk) unordered, into sub
    part_scores = np.take_along_axis(sub, part, axis=1)
    if cols is not None:
        part = np.take_along_axis(cols, part, axis=1)  # into scores
    # argpartition picks arbitrary members of a tie at the k-th score; redo those rows so the
    # lowest item_idx win (a -inf boundary does not matter: those entries become -1).
    kth = part_scores.min(axis=1)  # (n,)
    tied = (sub == kth[:, None]).sum(axis=1) > (part_scores == kth[:, None]).sum(axis=1)
    if outside_max is not None:  # a block left out may hold an item equal to the k-th
        tied |= outside_max >= kth
    for row in np.flatnonzero(tied & np.isfinite(kth)):
        part[row] = np.argsort(-scores[row], kind="stable")[:kk]
        part_scores[row] = scores[row, part[row]]
    order = np.lexsort((part, -part_scores), axis=1)  # score desc, then item_idx asc
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    val = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    idx[~np.isfinite(val)] = -1
    val[~np.isfinite(val)] = -np.inf
    if kk < k:  # catalog smaller than k
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return idx, val


def _candidate_columns(scores: np.ndarray, kk: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Columns (n, kk * _BLOCK + tail) holding every row's top kk, and the largest score (n,)
    outside them; (None, None) when a plain partition over all columns is as good.

    Each of a row's top kk items lies in one of the kk blocks of _BLOCK columns with the largest
    maxima (else kk other blocks would each hold a larger item), so partitions over the block
    maxima (n, n_items / 64) and over those blocks replace one over all n_items: several times
    faster for a large catalog and a small k. The ragged tail block is always a candidate."""
    n, n_items = scores.shape
    n_blocks = n_items // _BLOCK
    if n_blocks < 4 * kk:
        return None, None
    full = n_blocks * _BLOCK
    block_max = scores[:, :full].reshape(n, n_blocks, _BLOCK).max(axis=2)  # (n, n_blocks)
    if np.isnan(block_max).any():  # a NaN maximum would hide its block's real scores
        return None, None
    blocks = np.argpartition(-block_max, kk - 1, axis=1)  # (n, n_blocks), best kk first
    outside_max = np.take_along_axis(block_max, blocks[:, kk:], axis=1).max(axis=1)  # (n,)
    cols = (blocks[:, :kk, None] * _BLOCK + np.arange(_BLOCK)).reshape(n, kk * _BLOCK)
    if full < n_items:
        tail = np.broadcast_to(np.arange(full, n_items), (n, n_items - full))
        cols = np.concatenate([cols, tail], axis=1)
    return cols, outside_max
