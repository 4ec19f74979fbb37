"""Id maps: external string ids <-> contiguous int indices, built once, saved with every model."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class IdMap:
    """A bijection between external string ids and indices 0..n-1 (lightfm's Dataset idea)."""

    def __init__(self, ids: Sequence[str]):
        self._ids: list[str] = [str(i) for i in ids]
        self._index: dict[str, int] = {i: n for n, i in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError("IdMap: ids must be unique")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def to_idx(self, external_id: str) -> int:
        """Index of one external id; KeyError when unknown."""
        return self._index[external_id]

    def get_idx(self, external_id: str, default: int = -1) -> int:
        return self._index.get(external_id, default)

    def to_indices(self, external_ids: Iterable[str]) -> np.ndarray:
        """Indices for many ids, -1 for unknown ones. Shape (n,), int64."""
        return np.fromiter((self._index.get(i, -1) for i in external_ids), dtype=np.int64)

    def to_id(self, idx: int) -> str:
        return self._ids[int(idx)]

    def to_ids(self, indices: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in indices]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self._ids), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> IdMap:
        ids = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(ids, list):
            raise ValueError(f"{path}: expected a JSON list of ids, found {type(ids).__name__}")
        return cls(ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids
