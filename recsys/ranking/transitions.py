"""Ranking stage: the transitions recommender — what users interacted with *after* each item
(sequential rules, Ludewig & Jannach 2018), an item-to-item source that reads time order.

Reads an interaction frame (user_idx, item_idx, timestamp, row); writes transitions.npz and
transitions.json (recsys.ranking.item_graph: scoring by the history's rows with the recency
decay, save, load). W[i, j] = sum over users of gap_decay ** (gap - 1) for each time j came `gap`
interactions after i (1 <= gap <= window), each row divided by its sum (a next-item distribution),
the diagonal zero, each row cut to its top_n. Where users' logs have an order (sessions, series,
watching in sequence) this is what the next item follows; the co-occurrence sources ignore it.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.config import TransitionsConfig
from recsys.ranking.item_graph import ItemGraphRecommender, cut_rows
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX


def transition_weights(
    users: np.ndarray, items: np.ndarray, n_items: int, config: TransitionsConfig
) -> sp.csr_matrix:
    """(n_items, n_items) float32 csr of interactions already in (user, time) order: users (n,)
    and items (n,) int arrays, each user's rows contiguous, oldest first."""
    rows, cols, vals = [], [], []
    for gap in range(1, config.window + 1):
        if users.size <= gap:
            break
        same = users[gap:] == users[:-gap]  # (n - gap,) the pair is one user's
        rows.append(items[:-gap][same])
        cols.append(items[gap:][same])
        vals.append(np.full(int(same.sum()), config.gap_decay ** (gap - 1), dtype=np.float64))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    v[r == c] = 0.0  # an item followed by itself says nothing about what comes next
    weights = sp.csr_matrix((v, (r, c)), shape=(n_items, n_items), dtype=np.float64)
    weights.sum_duplicates()
    weights.eliminate_zeros()
    totals = np.asarray(weights.sum(axis=1)).ravel()
    weights = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ weights
    return cut_rows(weights, config.top_n)


class TransitionsRecommender(ItemGraphRecommender):
    """score(item) = sum over the history's items of how often the item followed them."""

    KIND = "transitions"
    CONFIG = TransitionsConfig

    @classmethod
    def fit_frame(
        cls, frame: pl.DataFrame, n_users: int, n_items: int, config: TransitionsConfig
    ) -> TransitionsRecommender:
        """Transition weights of a frame's interactions in (timestamp, row) order per user."""
        ordered = frame.sort([USER_IDX, TIMESTAMP, ROW])
        users, items = ordered[USER_IDX].to_numpy(), ordered[ITEM_IDX].to_numpy()
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(
                f"item_idx: expected values in [0, {n_items}), found {items.min()}..{items.max()}"
            )
        trained = np.zeros(n_items, dtype=bool)
        trained[items] = True
        return cls(transition_weights(users, items, n_items, config), trained, config)
