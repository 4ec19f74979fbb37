"""Ranking stage, serving side: every known user's top-K, ranked once at publish by the bundle's
own ranker (their stored history as the query and excluded), as Gorse serves from its offline
recommendation cache. Reads/writes topk.npz in a bundle (no pickle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.bundle import BundleError
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker, BlendResult

TOPK_FILE = "topk.npz"  # every known user's top-K, ranked at publish (optional)


class PrecomputedTopK:
    """Every known user's top-K (their stored history as the query and excluded), ranked once
    at publish, as Gorse serves from its offline recommendation cache. Arrays: item_idx (n, K)
    int64 (-1 pads), score (n, K), source scores (S, n, K) (NaN = not used), path per user."""

    def __init__(self, item_idx, score, sources, paths, source_names, path_names):
        self.item_idx, self.score, self.sources = item_idx, score, sources
        self.paths, self.source_names, self.path_names = paths, list(source_names), path_names

    @property
    def k(self) -> int:
        return int(self.item_idx.shape[1])

    @classmethod
    def compute(cls, ranker: BlendedRanker, histories: list[np.ndarray], k: int):
        """Rank every user (their stored history as the query and excluded) in one call; the
        ranker bounds its own batches."""
        queries = [Query(u, h.astype(np.int64), None) for u, h in enumerate(histories)]
        result = ranker.recommend_detailed(queries, k, [q.history for q in queries])
        sources = np.stack([result.source_scores[name] for name in ranker.names])  # (S, n, k)
        names = sorted(set(result.path))
        codes = np.array([names.index(p) for p in result.path], dtype=np.int16)
        return cls(result.item_idx, result.score, sources, codes, ranker.names, names)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            item_idx=self.item_idx.astype(np.int32),
            score=self.score,
            sources=self.sources,
            paths=self.paths,
            source_names=np.array(self.source_names),
            path_names=np.array(self.path_names),
        )

    @classmethod
    def load(cls, path: Path, n_users: int) -> PrecomputedTopK:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        if arrays["item_idx"].shape[0] != n_users:
            raise BundleError(
                f"{path}: top-k for {arrays['item_idx'].shape[0]} users, the bundle has {n_users}"
            )
        return cls(
            arrays["item_idx"].astype(np.int64),
            arrays["score"],
            arrays["sources"],
            arrays["paths"],
            arrays["source_names"].tolist(),
            arrays["path_names"].tolist(),
        )

    def result(self, user_idx: int, k: int) -> BlendResult:
        """The stored answer for one user, cut to k, as the ranker's own result type."""
        row = slice(user_idx, user_idx + 1)
        return BlendResult(
            self.item_idx[row, :k],
            self.score[row, :k],
            {name: self.sources[s, row, :k] for s, name in enumerate(self.source_names)},
            {},
            [self.path_names[int(self.paths[user_idx])]],
            [],
        )
