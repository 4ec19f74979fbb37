"""Ranking stage: user encoders of the content recommender — queries + item vectors -> user vectors.

A user encoder is any callable `(queries, item_vectors (n_items, dim)) -> (n, dim)` whose rows are
L2-normalised, or all zero when the query gives nothing to encode. Encoders that can be rebuilt
from JSON carry a `spec` dict; `ContentRecommender.save` records it so `load` re-attaches them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recsys.compute import ROW, cap_threads, map_batches, worker_threads
from recsys.config import ComputeConfig
from recsys.ranking.base import Query
from recsys.vectors import normalize_rows


class UserEncoder(Protocol):
    """(queries, item vectors (n_items, dim)) -> (n, dim) user vectors, unit rows or all zero."""

    def __call__(self, queries: Sequence[Query], item_vectors: np.ndarray) -> np.ndarray: ...


def history_key(history: np.ndarray) -> np.uint64:
    """64-bit fingerprint of an item_idx history (order matters): which history a precomputed
    user vector was encoded from."""
    data = np.ascontiguousarray(history, dtype=np.int64).tobytes()
    return np.uint64(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"))


class HistoryMeanEncoder:
    """The zero-shot user tower: mean of the item vectors of the last `last_n` history items.

    Profile text is ignored (this encoder has no text model); a query with no usable history
    encodes to the zero vector.
    """

    def __init__(self, last_n: int = 20):
        if last_n < 1:
            raise ValueError(f"HistoryMeanEncoder: last_n must be >= 1, found {last_n}")
        self.last_n = int(last_n)

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "history_mean", "last_n": self.last_n}

    def __call__(self, queries: Sequence[Query], item_vectors: np.ndarray) -> np.ndarray:
        n_items, dim = item_vectors.shape
        out = np.zeros((len(queries), dim), dtype=np.float32)  # (n, dim)
        for row, query in enumerate(queries):
            history = np.asarray(query.history, dtype=np.int64)
            history = history[(history >= 0) & (history < n_items)][-self.last_n :]
            if history.size:
                out[row] = item_vectors[history].mean(axis=0)
        return normalize_rows(out)


class TowerUserEncoder:
    """Adapts a trained TwoTowerEncoder (recsys.encoder) to the user-encoder call shape.

    `directory` is where the encoder is saved; it is recorded (relative to the recommender's own
    directory) so a bundle can be loaded without pickle.
    """

    def __init__(self, encoder: Any, directory: str | Path | None = None):
        self.encoder = encoder
        self.directory = None if directory is None else Path(directory)

    @property
    def spec(self) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        return {"kind": "two_tower", "dir": str(self.directory)}

    def __call__(self, queries: Sequence[Query], item_vectors: np.ndarray) -> np.ndarray:
        histories = [q.history for q in queries]
        profiles = [q.profile_text for q in queries]
        vectors = self.encoder.encode_users(histories, item_vectors, profiles)  # (n, dim)
        return normalize_rows(np.asarray(vectors, dtype=np.float32))


def encoder_from_spec(spec: dict[str, Any], base_dir: Path) -> UserEncoder:
    """Rebuild a user encoder recorded by `spec`; relative encoder paths start at `base_dir`."""
    kind = spec.get("kind")
    if kind == "history_mean":
        return HistoryMeanEncoder(int(spec.get("last_n", 20)))
    if kind == "two_tower":
        from recsys.encoder.model import TwoTowerEncoder  # torch: only when a tower is used

        directory = (Path(base_dir) / spec["dir"]).resolve()
        return TowerUserEncoder(TwoTowerEncoder.load(directory), directory)
    raise ValueError(
        f"{base_dir}: unknown user encoder kind {kind!r}; expected 'history_mean' or 'two_tower'"
    )


class KnownUserWorker:
    """One Ray actor (recsys.compute): the trained towers loaded from `encoder_dir` and the item
    vectors (n_items, dim) memory-mapped; batches {ROW, user, history, profile} -> {ROW, vector}."""

    def __init__(self, encoder_dir: str, item_vectors_file: str, threads: int):
        cap_threads(threads)
        self.encoder = encoder_from_spec({"kind": "two_tower", "dir": encoder_dir}, Path("/"))
        self.item_vectors = np.load(item_vectors_file, mmap_mode="r", allow_pickle=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = zip(batch["user"], batch["history"], batch["profile"], strict=True)
        queries = [Query(int(u), np.asarray(h, np.int64), p) for u, h, p in rows]
        return {ROW: batch[ROW], "vector": self.encoder(queries, self.item_vectors)}  # (b, dim)


def remote_user_vectors(
    encoder_dir: Path,
    item_vectors_file: Path,
    histories: Sequence[np.ndarray],
    profiles: Sequence[str | None],
    config: ComputeConfig,
) -> np.ndarray:
    """(n_users, dim) every user's tower vector, over user batches on the Ray actor pool."""
    columns = {
        "user": np.arange(len(histories), dtype=np.int64),
        "history": [np.asarray(h, np.int64) for h in histories],
        "profile": list(profiles),
    }
    kwargs = {"encoder_dir": str(Path(encoder_dir).resolve()), "threads": worker_threads(config)}
    kwargs["item_vectors_file"] = str(Path(item_vectors_file).resolve())
    out = map_batches(columns, KnownUserWorker, kwargs, config)
    return out["vector"].astype(np.float32, copy=False)
