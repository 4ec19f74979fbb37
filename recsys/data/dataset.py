"""Data stage: the canonical in-memory tables every later stage reads (see docs/internals.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.ids import IdMap
from recsys.schema import ITEM_IDX, USER_IDX, WEIGHT


@dataclass(frozen=True)
class Dataset:
    items: pl.DataFrame  # ITEM_IDX (== row), ITEM_ID, text columns
    users: pl.DataFrame  # USER_IDX (== row), USER_ID, text columns (may be none)
    interactions: pl.DataFrame  # USER_IDX, ITEM_IDX, TIMESTAMP, WEIGHT, ROW; sorted
    item_map: IdMap
    user_map: IdMap
    item_text_columns: list[str]
    user_text_columns: list[str]
    source: str = ""

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def interaction_matrix(self, interactions: pl.DataFrame | None = None) -> sp.csr_matrix:
        """(n_users, n_items) float32 matrix of interaction weights (repeats summed)."""
        frame = self.interactions if interactions is None else interactions
        rows = frame[USER_IDX].to_numpy()
        cols = frame[ITEM_IDX].to_numpy()
        vals = frame[WEIGHT].to_numpy().astype(np.float32)
        matrix = sp.csr_matrix((vals, (rows, cols)), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        return matrix
