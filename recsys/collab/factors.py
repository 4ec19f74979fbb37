"""Collab stage: the factor model every collaborative plug-in reduces to, and its npz + JSON files.

Reads a fitted model's arrays; writes collab.npz (arrays only, loaded with allow_pickle=False) and
collab.json (kind, config, sizes). Scores are user vector . item vector + item bias (+ user bias).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.bundle_arrays import load_npz
from recsys.config import CollabConfig

ARRAYS_FILE = "collab.npz"
META_FILE = "collab.json"


def check_interactions(matrix: sp.spmatrix, what: str = "interaction matrix") -> sp.csr_matrix:
    """(n_users, n_items) csr float32 with finite, non-negative weights, or a clear error."""
    if not sp.issparse(matrix):
        raise TypeError(f"{what}: expected a scipy.sparse matrix, found {type(matrix).__name__}")
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{what}: expected (n_users, n_items) with both > 0, found {matrix.shape}")
    bad = ~np.isfinite(matrix.data) | (matrix.data < 0)
    if bad.any():
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))[bad]
        raise ValueError(
            f"{what}: expected finite weights >= 0, found {matrix.data[bad][:3].tolist()} "
            f"in user rows {np.unique(rows)[:5].tolist()}"
        )
    matrix.eliminate_zeros()
    return matrix


class FactorModel(ABC):
    """user_factors (n_users, d), item_factors (n_items, d), biases; fold-in for unseen users."""

    kind: ClassVar[str]

    def __init__(
        self,
        config: CollabConfig,
        user_factors: np.ndarray,
        user_biases: np.ndarray,
        item_factors: np.ndarray,
        item_biases: np.ndarray,
        user_trained: np.ndarray,
        item_trained: np.ndarray,
    ):
        self.config = config
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)  # (n_users, d)
        self.user_biases = np.asarray(user_biases, dtype=np.float32)  # (n_users,)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)  # (n_items, d)
        self.item_biases = np.asarray(item_biases, dtype=np.float32)  # (n_items,)
        # (n_users,) bool: the user had training interactions, so their factors mean something
        self.user_trained = np.asarray(user_trained, dtype=bool)
        # (n_items,) bool: the item's vector was learned (interactions, or features in hybrid mode)
        self.item_trained = np.asarray(item_trained, dtype=bool)

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    def score_vectors(self, vectors: np.ndarray, biases: np.ndarray | None = None) -> np.ndarray:
        """(n, n_items) float32 = vectors (n, d) . item_factors.T + item_biases (+ biases (n,))."""
        scores = np.asarray(vectors, dtype=np.float32) @ self.item_factors.T  # (n, n_items)
        scores += self.item_biases[None, :]
        if biases is not None:
            scores += np.asarray(biases, dtype=np.float32)[:, None]
        return scores

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """(n, n_items) scores of known users from their learned factors and biases."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        return self.score_vectors(self.user_factors[user_idx], self.user_biases[user_idx])

    def usable_history(self, history: np.ndarray) -> np.ndarray:
        """History item_idx that are in the catalog and have learned vectors."""
        history = valid_history(history, self.n_items)
        return history[self.item_trained[history]]

    @abstractmethod
    def fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(n, d) user vectors from item_idx histories; zero rows where no item is usable."""

    def save(self, directory: Path) -> None:
        """collab.npz (arrays) + collab.json (kind, config, sizes); no pickle."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        trained = {"user_trained": self.user_trained, "item_trained": self.item_trained}
        arrays = {**trained, **self._arrays()}
        np.savez(directory / ARRAYS_FILE, **arrays)
        meta = {
            "kind": self.kind,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "factors": int(self.item_factors.shape[1]),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The arrays that restore this model exactly (besides user_/item_trained)."""

    @classmethod
    @abstractmethod
    def from_arrays(cls, config: CollabConfig, arrays: dict[str, np.ndarray]) -> FactorModel:
        """Inverse of _arrays()."""


def read_model_files(directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a saved FactorModel; errors name the file and what is missing."""
    directory = Path(directory)
    meta_path, arrays_path = directory / META_FILE, directory / ARRAYS_FILE
    for path in (meta_path, arrays_path):
        if not path.is_file():
            raise FileNotFoundError(f"collaborative model file not found: {path}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    missing = {"kind", "config", "n_users", "n_items"} - set(meta)
    if missing:
        raise ValueError(f"{meta_path}: missing keys {sorted(missing)}")
    return meta, load_npz(arrays_path)  # factor matrices memory-mapped (recsys.bundle_arrays)


def csr_to_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A csr matrix as plain arrays for npz (no pickle)."""
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(s) for s in arrays[f"{prefix}_shape"])
    parts = (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"])
    return sp.csr_matrix(parts, shape=shape)


def valid_history(history: np.ndarray, n_items: int) -> np.ndarray:
    """History item_idx within the catalog (unknown ids, -1, are dropped)."""
    history = np.asarray(history, dtype=np.int64).ravel()
    return history[(history >= 0) & (history < n_items)]
