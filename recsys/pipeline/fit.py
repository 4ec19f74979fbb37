"""Pipeline: fit every source on a split and learn the blend — shared by the nightly job, the
stage commands and the quality benchmark, so they all train the same way.

Reads a Dataset and its Split; returns fitted recommenders (saved by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.config import PipelineConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.ranking.base import Query, Recommender
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training.blend_weights import learn_weights


def histories(frame: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """Per user_idx, the item_idx of `frame` in its (time) order. frame is sorted by user."""
    out = [np.zeros(0, dtype=np.int64) for _ in range(n_users)]
    if frame.height == 0:
        return out
    grouped = frame.group_by(USER_IDX, maintain_order=True).agg(pl.col(ITEM_IDX))
    for user_idx, items in zip(
        grouped[USER_IDX].to_list(), grouped[ITEM_IDX].to_list(), strict=True
    ):
        out[user_idx] = np.asarray(items, dtype=np.int64)
    return out


@dataclass(frozen=True)
class EvalSet:
    """Held-out queries: each user's history before the held-out part, and what came next."""

    user_idx: np.ndarray  # (n,)
    queries: list[Query]
    relevant: list[np.ndarray]
    exclude: list[np.ndarray]


def eval_set(history_frames: list[pl.DataFrame], held_out: pl.DataFrame, n_users: int) -> EvalSet:
    """Queries for users with held-out interactions; history = the concatenated frames."""
    history = pl.concat(history_frames).sort([USER_IDX, TIMESTAMP, ROW])
    per_user = histories(history, n_users)
    relevant = histories(held_out, n_users)
    users = np.array([u for u in range(n_users) if relevant[u].size], dtype=np.int64)
    queries = [Query(int(u), per_user[u]) for u in users]
    return EvalSet(users, queries, [relevant[u] for u in users], [per_user[u] for u in users])


def matrix(frame: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """(n_users, n_items) binary interaction matrix of a frame (every interaction a positive)."""
    rows = frame[USER_IDX].to_numpy()
    cols = frame[ITEM_IDX].to_numpy()
    values = np.ones(len(rows), dtype=np.float32)
    out = sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items))
    out.data[:] = 1.0  # repeats count once
    return out


def fit_popularity(dataset: Dataset, train: pl.DataFrame) -> PopularityRecommender:
    return PopularityRecommender.fit(matrix(train, dataset.n_users, dataset.n_items))


def fit_collab(dataset: Dataset, train: pl.DataFrame, config: PipelineConfig) -> CollabRecommender:
    """LightFM or ALS; with collab.item_features, LightFM's hybrid mode over item text tokens."""
    features = None
    if config.collab.item_features:
        from recsys.collab.features import item_token_features

        features = item_token_features(dataset)[0]
    interactions = matrix(train, dataset.n_users, dataset.n_items)
    return CollabRecommender.fit(interactions, config.collab, item_features=features)


def fit_blend(
    sources: dict[str, Recommender], dataset: Dataset, split: Split, config: PipelineConfig
) -> BlendedRanker:
    """Weights learned on the validation split (queries = train histories); fixed ones if set."""
    lengths = np.array([h.size for h in histories(split.train, dataset.n_users)])
    if config.blend.fixed_weights is not None or split.valid.height == 0:
        weights = (
            SegmentWeights.fixed(config.blend.fixed_weights, config.blend.segment_bounds)
            if config.blend.fixed_weights is not None
            else SegmentWeights.uniform(list(config.blend.sources), config.blend.segment_bounds)
        )
    else:
        valid = eval_set([split.train], split.valid, dataset.n_users)
        weights = learn_weights(
            sources,
            valid.queries,
            valid.relevant,
            valid.exclude,
            config.blend,
            k=config.eval.k,
            user_history_len=lengths,
        )
    return BlendedRanker(sources, weights, config.blend, lengths)
