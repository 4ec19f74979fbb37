"""Ranking stage: the item-neighbour recommender — RP3beta item-to-item weights (Paudel 2017).

Reads an interaction matrix; writes neighbors.npz (each item's top-N neighbour weights, sparse,
and which items had interactions) and neighbors.json. A query scores by its history alone: the
rows of its history items summed, so known and unknown users are served alike (Gorse's
item-to-item recall source). Items without interactions score -inf (cold items are the text
source's), as does a query without a usable history. Newer history items count more
([neighbors] recency ** age: the session-kNN decay).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.bundle_arrays import load_npz
from recsys.collab.factors import check_interactions, csr_from_arrays, csr_to_arrays, valid_history
from recsys.config import NeighborsConfig
from recsys.ranking.base import Query, Recommender, apply_exclusions, top_k
from recsys.ranking.retrieval import Retrieved, dense_retrieve

_ARRAYS = "neighbors.npz"
_META = "neighbors.json"
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


class NeighborsRecommender(Recommender):
    """score(item) = sum of the item's weight as a neighbour of each history item (RP3beta)."""

    def __init__(self, weights: sp.csr_matrix, trained: np.ndarray, config: NeighborsConfig):
        self.weights = sp.csr_matrix(weights, dtype=np.float32)  # (n_items, n_items)
        self.trained = np.asarray(trained, dtype=bool)  # (n_items,) had interactions
        if config.recency == "auto":  # chosen from time order (recsys.pipeline.fit); none here
            config = config.model_copy(update={"recency": 1.0})
        self.config = config
        if self.weights.shape != (self.trained.size, self.trained.size):
            raise ValueError(
                f"weights: expected shape ({self.trained.size}, {self.trained.size}) (one row "
                f"and column per item), found {self.weights.shape}"
            )

    @classmethod
    def fit(
        cls, matrix: sp.spmatrix, config: NeighborsConfig | None = None
    ) -> NeighborsRecommender:
        """RP3beta weights of a (n_users, n_items) interaction matrix (weights read as 0/1)."""
        config = config or NeighborsConfig()
        binary = check_interactions(matrix)
        trained = np.diff(binary.T.tocsr().indptr) > 0  # (n_items,) with any interaction
        return cls(_rp3beta(binary, config), trained, config)

    @property
    def n_items(self) -> int:
        return self.trained.size

    def history_matrix(self, queries: Sequence[Query]) -> tuple[sp.csr_matrix, np.ndarray]:
        """(n, n_items) csr of each query's history items in the catalog, each weighted
        recency ** age (age 0: the newest; a repeated item at its newest), and (n,) bool: the
        query has at least one item that had interactions."""
        rows, cols, ages = [], [], []
        usable = np.zeros(len(queries), dtype=bool)
        for row, query in enumerate(queries):
            newest_first = valid_history(query.history, self.n_items)[::-1]
            items, age = np.unique(newest_first, return_index=True)  # first index: the newest
            rows.append(np.full(items.size, row))
            cols.append(items)
            ages.append(age)
            usable[row] = bool(self.trained[items].any())
        if not queries:
            return sp.csr_matrix((0, self.n_items), dtype=np.float32), usable
        weights = np.power(self.config.recency, np.concatenate(ages)).astype(np.float32)
        shape = (len(queries), self.n_items)
        x = sp.csr_matrix((weights, (np.concatenate(rows), np.concatenate(cols))), shape=shape)
        return x, usable

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items): the history's rows of the weights summed; -inf for items without
        interactions and for queries without a history item that had any."""
        x, usable = self.history_matrix(queries)
        scores = np.asarray((x @ self.weights).toarray(), dtype=np.float32)  # (n, n_items)
        scores[~usable] = -np.inf
        scores[:, ~self.trained] = -np.inf
        return scores

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """The blend's top-n from one sparse product of this batch's histories with the weights,
        (q, n_items) for this batch only (as collab's MIPS), partitioned, gathered for the union."""
        return dense_retrieve(self.score(queries), n, exclude, allowed)

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's strongest neighbours (at most top_n; -1 padded), itself excluded."""
        if not 0 <= item_idx < self.n_items:
            raise IndexError(f"item_idx {item_idx} out of range: catalog has {self.n_items} items")
        row = self.weights[item_idx]  # (1, n_items) csr
        scores = np.full((1, self.n_items), -np.inf, dtype=np.float32)
        scores[0, row.indices] = row.data
        apply_exclusions(scores, [np.array([item_idx])], None)
        ids, vals = top_k(scores, k)
        return ids[0], vals[0]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"trained": self.trained, **csr_to_arrays("weights", self.weights)}
        np.savez(directory / _ARRAYS, **arrays)
        meta = {
            "kind": "neighbors",
            "n_items": self.n_items,
            "config": self.config.model_dump(mode="json"),
        }
        (directory / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> NeighborsRecommender:
        directory = Path(directory)
        path, meta_path = directory / _ARRAYS, directory / _META
        for needed in (path, meta_path):
            if not needed.is_file():
                raise FileNotFoundError(f"neighbors model file not found: {needed}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("kind") != "neighbors":
            raise ValueError(f"{meta_path}: kind {meta.get('kind')!r}, expected 'neighbors'")
        arrays = load_npz(path)  # memory-mapped (recsys.bundle_arrays)
        settings = {"recency": 1.0, **meta["config"]}  # saved before recency: every item alike
        config = NeighborsConfig.model_validate(settings)
        return cls(csr_from_arrays("weights", arrays), arrays["trained"], config)
