"""Index stage: per-query exclusions and compaction of over-fetched FAISS results into top-k rows.

Reads raw (labels, scores) from a FAISS search; writes (n, k) item_idx padded with -1 and scores
padded with -inf. Kept apart from faiss_index.py so the filtering rules can be read on their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Exclusions:
    """Per-query excluded item ids, held as sorted keys `row * n_items + item` for one np.isin."""

    def __init__(self, exclude: Sequence[np.ndarray] | None, n_queries: int, n_items: int):
        self.n_items = n_items
        self.max_count = 0  # most exclusions of any one query: the over-fetch that always suffices
        self.keys = np.zeros(0, dtype=np.int64)
        if exclude is None:
            return
        if len(exclude) != n_queries:
            raise ValueError(
                f"exclude: expected one array of item_idx per query ({n_queries}), "
                f"found {len(exclude)}"
            )
        parts = []
        for row, items in enumerate(exclude):
            items = np.unique(np.asarray(items, dtype=np.int64).ravel())
            items = items[(items >= 0) & (items < n_items)]  # out-of-catalog ids cannot appear
            self.max_count = max(self.max_count, items.size)
            parts.append(row * np.int64(n_items) + items)
        if parts:
            self.keys = np.sort(np.concatenate(parts))

    def mask(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(len(rows), m) bool: True where labels[i, j] is excluded for query rows[i]."""
        if self.keys.size == 0:
            return np.zeros(labels.shape, dtype=bool)
        keys = rows[:, None].astype(np.int64) * self.n_items + labels  # (len(rows), m)
        return np.isin(keys, self.keys)


def compact(
    labels: np.ndarray, scores: np.ndarray, invalid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the first k valid results of each row, in the order FAISS gave them (best first).

    labels, scores, invalid: (n, m). Returns idx (n, k) int64 padded -1, scores (n, k) float32
    padded -inf, and full (n,) bool: the row got k valid results.
    """
    invalid = invalid | (labels < 0)  # FAISS pads missing results with -1 / -FLT_MAX
    order = np.argsort(invalid, axis=1, kind="stable")[:, :k]  # valid first, order kept; (n, <=k)
    idx = np.take_along_axis(labels, order, axis=1).astype(np.int64)
    val = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    bad = np.take_along_axis(invalid, order, axis=1)
    idx[bad] = -1
    val[bad] = -np.inf
    full = (~bad).sum(axis=1) == k
    if idx.shape[1] < k:  # fewer results fetched than asked for
        pad = k - idx.shape[1]
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx, val, full
