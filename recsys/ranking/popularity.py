"""Ranking stage: the popularity recommender — the same interaction counts for every query.

Reads an interaction matrix; writes popularity.npz (counts + item-user incidence, for
item-to-item co-occurrence) and popularity.json. The fallback for users nothing else can score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.bundle_arrays import load_npz
from recsys.collab.factors import check_interactions, csr_from_arrays, csr_to_arrays
from recsys.ranking.base import Query, Recommender, top_similar
from recsys.ranking.retrieval import Retrieved, first_valid, sparse_exclusions

_ARRAYS = "popularity.npz"
_META = "popularity.json"
_DAY = 86_400.0


class PopularityRecommender(Recommender):
    """score(item) = its popularity, for every query; similar_items = co-occurrence, popularity."""

    def __init__(self, popularity: np.ndarray, item_users: sp.csr_matrix):
        self.popularity = np.asarray(popularity, dtype=np.float32)  # (n_items,)
        # (n_items, n_users) binary: who interacted with each item, for co-occurrence counts
        self.item_users = sp.csr_matrix(item_users, dtype=np.float32)
        if self.item_users.shape[0] != self.popularity.shape[0]:
            raise ValueError(
                f"item_users: expected {self.popularity.shape[0]} rows (one per item), "
                f"found {self.item_users.shape[0]}"
            )

        self._order: np.ndarray | None = None  # item_idx most popular first, built lazily

    @property
    def n_items(self) -> int:
        return self.popularity.shape[0]

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """The blend's top-n from the precomputed popularity order (the same for every query):
        the first n allowed items past each query's exclusions."""
        if self._order is None:
            self._order = np.argsort(-self.popularity, kind="stable")  # ties: lower item_idx
        q, top = len(queries), min(n, self.n_items)
        reference = np.tile(self.popularity[self._order[:top]], (q, 1))  # (q, top)
        pool = (
            self._order if allowed is None else self._order[np.asarray(allowed, bool)[self._order]]
        )
        extra = max((np.size(e) for e in exclude), default=0) if exclude is not None else 0
        head = np.tile(pool[: top + extra], (q, 1))  # (q, <= top + extra)
        ids = first_valid(sparse_exclusions(head, exclude, None), top)
        return Retrieved(ids, reference, self._score_items)

    def _score_items(self, items: np.ndarray) -> np.ndarray:
        """Popularity of items (q, C); -inf where items are -1 or unknown."""
        ok = (items >= 0) & (items < self.n_items)
        return np.where(ok, self.popularity[np.where(ok, items, 0)], -np.inf).astype(np.float32)

    @classmethod
    def fit(cls, matrix: sp.spmatrix) -> PopularityRecommender:
        """Popularity = number of distinct users per item of a (n_users, n_items) matrix."""
        binary = check_interactions(matrix)
        binary.data[:] = 1.0
        item_users = binary.T.tocsr()  # (n_items, n_users)
        return cls(np.diff(item_users.indptr).astype(np.float32), item_users)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items): the popularity row, the same for every query."""
        return np.tile(self.popularity, (len(queries), 1))

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items most often co-interacted with item_idx; ties (and none shared) by popularity."""
        self.check_item(item_idx)
        together = self.item_users @ self.item_users[item_idx].T  # (n_items, 1) shared users
        cooc = np.asarray(together.todense(), dtype=np.float64).ravel()
        top = float(self.popularity.max(initial=0.0))
        # co-occurrence counts are integers; the popularity term is < 1 so it only breaks ties
        scores = cooc + 0.5 * self.popularity / (top if top > 0 else 1.0)
        scores = scores.astype(np.float32)[None, :]  # (1, n_items)
        return top_similar(scores, item_idx, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        incidence = csr_to_arrays("item_users", self.item_users)
        del incidence["item_users_data"]  # all ones: the pattern is the information
        arrays = {"popularity": self.popularity, **incidence}
        np.savez(directory / _ARRAYS, **arrays)
        meta = {"kind": "popularity", "n_items": self.n_items, "n_users": self.item_users.shape[1]}
        (directory / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> PopularityRecommender:
        path = Path(directory) / _ARRAYS
        if not path.is_file():
            raise FileNotFoundError(f"popularity model file not found: {path}")
        arrays = load_npz(path)  # memory-mapped (recsys.bundle_arrays)
        arrays["item_users_data"] = np.ones(arrays["item_users_indices"].size, dtype=np.float32)
        return cls(arrays["popularity"], csr_from_arrays("item_users", arrays))
