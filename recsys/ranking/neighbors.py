"""Ranking stage: the item-neighbour recommender — RP3beta item-to-item weights (Paudel 2017).

Reads an interaction matrix; writes neighbors.npz (each item's top-N neighbour weights, sparse,
and which items had interactions) and neighbors.json. Scoring, the recency decay, save and load
are the item-graph sources' (recsys.ranking.item_graph).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.collab.factors import check_interactions
from recsys.config import NeighborsConfig
from recsys.ranking.item_graph import ItemGraphRecommender
from recsys.schema import ITEM_IDX, USER_IDX

_BLOCK_CELLS = 1 << 22  # rows per block x n_items: bounds the dense walk block while fitting


def rp3beta_weights(matrix: sp.spmatrix, config: NeighborsConfig) -> sp.csr_matrix:
    """(n_items, n_items) float32 csr: W[i, j] = sum_u P(i->u)^alpha P(u->j)^alpha / pop_j^beta,
    the two-step walk item -> user -> item of a binary (n_users, n_items) matrix, the diagonal
    zero, each row cut to its `top_n` largest positive entries."""
    return _rp3beta(check_interactions(matrix), config)


def _rp3beta(binary: sp.csr_matrix, config: NeighborsConfig) -> sp.csr_matrix:
    """rp3beta_weights of a matrix check_interactions already passed (read as 0/1; the
    caller's matrix is left as it was)."""
    x = binary.astype(np.float64)  # a copy
    x.data[:] = 1.0
    deg_u = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)  # (n_users,)
    deg_i = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)  # (n_items,)
    to_item = (sp.diags(1.0 / deg_u) @ x).power(config.alpha).tocsr()  # (n_users, n_items)
    to_user = (sp.diags(1.0 / deg_i) @ x.T).power(config.alpha).tocsr()  # (n_items, n_users)
    penalty = np.power(deg_i, -config.beta)  # (n_items,)
    n_items = x.shape[1]
    step = max(1, _BLOCK_CELLS // max(n_items, 1))
    blocks = [
        _top_rows((to_user[start : start + step] @ to_item).toarray() * penalty, start, config)
        for start in range(0, n_items, step)
    ]
    return sp.vstack(blocks, format="csr", dtype=np.float32)


def _top_rows(walk: np.ndarray, start: int, config: NeighborsConfig) -> sp.csr_matrix:
    """Rows start.. of the walk (b, n_items) without self-weights, each cut to its top_n
    positive entries, as csr (b, n_items)."""
    rows = np.arange(walk.shape[0])
    walk[rows, start + rows] = 0.0
    if config.top_n < walk.shape[1]:
        cut = np.argpartition(-walk, config.top_n - 1, axis=1)[:, : config.top_n]  # (b, top_n)
        kept = np.zeros_like(walk)
        np.put_along_axis(kept, cut, np.take_along_axis(walk, cut, axis=1), axis=1)
        walk = kept
    walk[walk < 0] = 0.0
    return sp.csr_matrix(walk.astype(np.float32))


class NeighborsRecommender(ItemGraphRecommender):
    """score(item) = sum of the item's weight as a neighbour of each history item (RP3beta)."""

    KIND = "neighbors"
    CONFIG = NeighborsConfig

    @classmethod
    def fit(
        cls, matrix: sp.spmatrix, config: NeighborsConfig | None = None
    ) -> NeighborsRecommender:
        """RP3beta weights of a (n_users, n_items) interaction matrix (weights read as 0/1)."""
        config = config or NeighborsConfig()
        binary = check_interactions(matrix)
        trained = np.diff(binary.T.tocsr().indptr) > 0  # (n_items,) with any interaction
        return cls(_rp3beta(binary, config), trained, config)

    @classmethod
    def fit_frame(
        cls, frame: pl.DataFrame, n_users: int, n_items: int, config: NeighborsConfig
    ) -> NeighborsRecommender:
        """RP3beta weights of an interaction frame's (user, item) pairs."""
        values = np.ones(frame.height, dtype=np.float32)
        cells = (frame[USER_IDX].to_numpy(), frame[ITEM_IDX].to_numpy())
        return cls.fit(sp.csr_matrix((values, cells), shape=(n_users, n_items)), config)
