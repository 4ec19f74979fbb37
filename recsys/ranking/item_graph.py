"""Ranking stage: the shared body of the item-to-item sources — a sparse (n_items, n_items)
weight matrix whose rows a query's history items sum, newer items counting more.

Reads and writes <kind>.npz (the weights, sparse, and which items had interactions) and
<kind>.json (kind and config). Subclasses say how the weights are fitted (recsys.ranking.neighbors:
RP3beta walks; recsys.ranking.transitions: what followed what). Known and unknown users are served
alike (Gorse's item-to-item recall). Items without interactions score -inf (cold items are the
text source's), as does a query without a usable history. A history item's row counts
`recency ** age` (the session-kNN decay; age 0: the newest).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel

from recsys.bundle_arrays import load_npz
from recsys.collab.factors import csr_from_arrays, csr_to_arrays, valid_history
from recsys.ranking.base import Query, Recommender, top_similar


class ItemGraphRecommender(Recommender):
    """score(item) = sum over the history's items h of recency ** age(h) * weights[h, item]."""

    KIND: ClassVar[str]  # bundle directory files, meta "kind"
    CONFIG: ClassVar[type[BaseModel]]  # its config section (a `recency` field)

    def __init__(self, weights: sp.csr_matrix, trained: np.ndarray, config: BaseModel):
        self.weights = sp.csr_matrix(weights, dtype=np.float32)  # (n_items, n_items)
        self.trained = np.asarray(trained, dtype=bool)  # (n_items,) had interactions
        if config.recency == "auto":  # chosen from time order (recsys.training.recency); none here
            config = config.model_copy(update={"recency": 1.0})
        self.config = config
        if self.weights.shape != (self.trained.size, self.trained.size):
            raise ValueError(
                f"weights: expected shape ({self.trained.size}, {self.trained.size}) (one row "
                f"and column per item), found {self.weights.shape}"
            )

    @classmethod
    @abstractmethod
    def fit_frame(
        cls, frame: pl.DataFrame, n_users: int, n_items: int, config: BaseModel
    ) -> ItemGraphRecommender:
        """Fitted on an interaction frame (user_idx, item_idx, timestamp, row)."""

    def with_recency(self, recency: float) -> ItemGraphRecommender:
        """The same weights scoring with another decay (shares the arrays)."""
        return type(self)(
            self.weights, self.trained, self.config.model_copy(update={"recency": recency})
        )

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

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's strongest neighbours (at most top_n; -1 padded), itself excluded."""
        self.check_item(item_idx)
        row = self.weights[item_idx]  # (1, n_items) csr
        scores = np.full((1, self.n_items), -np.inf, dtype=np.float32)
        scores[0, row.indices] = row.data
        return top_similar(scores, item_idx, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"trained": self.trained, **csr_to_arrays("weights", self.weights)}
        np.savez(directory / f"{self.KIND}.npz", **arrays)
        meta = {
            "kind": self.KIND,
            "n_items": self.n_items,
            "config": self.config.model_dump(mode="json"),
        }
        (directory / f"{self.KIND}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ItemGraphRecommender:
        directory = Path(directory)
        path, meta_path = directory / f"{cls.KIND}.npz", directory / f"{cls.KIND}.json"
        for needed in (path, meta_path):
            if not needed.is_file():
                raise FileNotFoundError(f"{cls.KIND} model file not found: {needed}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("kind") != cls.KIND:
            raise ValueError(f"{meta_path}: kind {meta.get('kind')!r}, expected {cls.KIND!r}")
        arrays = load_npz(path)  # memory-mapped (recsys.bundle_arrays)
        settings = {"recency": 1.0, **meta["config"]}  # saved before recency: every item alike
        config = cls.CONFIG.model_validate(settings)
        return cls(csr_from_arrays("weights", arrays), arrays["trained"], config)


def cut_rows(weights: sp.csr_matrix, top_n: int) -> sp.csr_matrix:
    """Each row of a csr matrix cut to its top_n largest positive entries (float32 csr)."""
    weights = sp.csr_matrix(weights, dtype=np.float32)
    weights.data[weights.data < 0] = 0.0
    weights.eliminate_zeros()
    counts = np.diff(weights.indptr)
    if counts.size == 0 or counts.max() <= top_n:
        return weights
    keep = np.ones(weights.nnz, dtype=bool)
    for row in np.flatnonzero(counts > top_n):
        start, end = weights.indptr[row], weights.indptr[row + 1]
        drop = np.argpartition(-weights.data[start:end], top_n - 1)[top_n:]
        keep[start + drop] = False
    weights.data[~keep] = 0.0
    weights.eliminate_zeros()
    return weights
