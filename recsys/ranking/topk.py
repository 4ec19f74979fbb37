"""Ranking stage, serving side: every known user's top-K, ranked once at publish by the bundle's
own ranker (their stored history as the query and excluded), as Gorse serves from its offline
recommendation cache; on a Ray cluster over user batches ([compute]). Reads/writes topk.npz in a
bundle (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recsys.bundle import BundleError
from recsys.bundle_arrays import load_npz
from recsys.compute import ROW, cap_threads, map_batches, worker_threads
from recsys.config import ComputeConfig
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker

TOPK_FILE = "topk.npz"  # every known user's top-K, ranked at publish (optional)
USER = "user"  # the user_idx column of the Ray batches


class PrecomputedTopK:
    """Every known user's top-K (their stored history as the query and excluded), ranked once
    at publish, as Gorse serves from its offline recommendation cache. Arrays: item_idx (n, K)
    (-1 pads; int32 when loaded from a bundle), score (n, K), source scores (S, n, K) (NaN =
    not used), path per user."""

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
        users = np.arange(len(histories), dtype=np.int64)
        item_idx, score, sources, paths = rank_users(ranker, users, histories, k)
        return cls.assemble(item_idx, score, sources, paths, ranker.names)

    @classmethod
    def assemble(cls, item_idx, score, sources, paths, source_names) -> PrecomputedTopK:
        """From every user's rows: item_idx, score (n, K), sources (S, n, K), paths (n,) str."""
        names = sorted({str(p) for p in paths})
        codes = np.array([names.index(str(p)) for p in paths], dtype=np.int16)
        return cls(item_idx, score, sources, codes, source_names, names)

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
        arrays = load_npz(path)  # memory-mapped: one copy per host (recsys.bundle_arrays)
        if arrays["item_idx"].shape[0] != n_users:
            raise BundleError(
                f"{path}: top-k for {arrays['item_idx'].shape[0]} users, the bundle has {n_users}"
            )
        return cls(
            arrays["item_idx"],  # int32 as stored; row() widens the rows it returns
            arrays["score"],
            arrays["sources"],
            arrays["paths"],
            arrays["source_names"].tolist(),
            arrays["path_names"].tolist(),
        )

    def row(self, user_idx: int, k: int) -> tuple[np.ndarray, np.ndarray, dict, str]:
        """The stored answer for one user, cut to k: item_idx (k,) int64 (-1 pads at the end),
        score (k,), source name -> (k,) raw scores, path."""
        sources = self.sources[:, user_idx, :k]  # (S, k)
        return (
            self.item_idx[user_idx, :k].astype(np.int64),
            self.score[user_idx, :k],
            {name: sources[s] for s, name in enumerate(self.source_names)},
            self.path_names[int(self.paths[user_idx])],
        )


def rank_users(
    ranker: BlendedRanker, users: np.ndarray, histories: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Users ranked with their histories as the query and excluded: item_idx, score (n, k),
    source scores (S, n, k), path per user."""
    pairs = zip(users, histories, strict=True)
    queries = [Query(int(u), np.asarray(h, np.int64), None) for u, h in pairs]
    result = ranker.recommend_detailed(queries, k, [q.history for q in queries])
    sources = np.stack([result.source_scores[name] for name in ranker.names])  # (S, n, k)
    return result.item_idx, result.score, sources, list(result.path)


class TopKWorker:
    """One Ray actor (recsys.compute): the ranker and histories loaded from the model directory
    being written; batches {ROW, USER} -> each user's top-k rows, sources as (b, S, k)."""

    def __init__(self, ranker_dir: str, histories_file: str, k: int, threads: int):
        cap_threads(threads)
        self.ranker = BlendedRanker.load(Path(ranker_dir))
        with np.load(histories_file, allow_pickle=False) as npz:
            self.indptr, self.flat = npz["indptr"], npz["indices"]  # (n_users + 1,), (m,)
        self.k = k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        users = np.asarray(batch[USER], dtype=np.int64)
        histories = [self.flat[self.indptr[u] : self.indptr[u + 1]] for u in users]
        item_idx, score, sources, paths = rank_users(self.ranker, users, histories, self.k)
        out = {"item_idx": item_idx, "score": score, "sources": sources.transpose(1, 0, 2)}
        return {ROW: batch[ROW], **out, "path": np.array(paths)}


def remote_topk(
    ranker_dir: Path,
    histories_file: Path,
    names: list[str],
    n_users: int,
    k: int,
    config: ComputeConfig,
) -> PrecomputedTopK:
    """PrecomputedTopK.compute over user batches on the Ray actor pool ([compute])."""
    kwargs = {"ranker_dir": str(ranker_dir), "histories_file": str(histories_file), "k": k}
    kwargs["threads"] = worker_threads(config)
    out = map_batches({USER: np.arange(n_users, dtype=np.int64)}, TopKWorker, kwargs, config)
    sources = out["sources"].transpose(1, 0, 2)  # (S, n, k)
    return PrecomputedTopK.assemble(out["item_idx"], out["score"], sources, out["path"], names)
