"""Training stage: choosing an item-graph source's recency decay on the frame it is fitted on.

Reads an interaction frame (user_idx, item_idx, timestamp, row); holds out each user's newest
interaction (users with at least two), fits the source (recsys.ranking.item_graph: neighbors,
transitions) on the rest and returns the RECENCY_GRID value whose recency-weighted history sums
rank the held-out item best (mean NDCG@k over at most `max_users` users, drawn with a fixed seed).
Sparse logs favour a mild decay, long histories a strong one (BENCHMARKS.md, issue 15), so a
fixed value fits neither.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel

from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.base import Query
from recsys.ranking.item_graph import ItemGraphRecommender
from recsys.ranking.neighbors import NeighborsRecommender
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX

# Mildest first (ties keep the mildest). No 1.0: some decay beat none outside-in on every
# MovieLens variant measured, where this internal hold-out of one item per user is too noisy on
# sparse logs to see it (BENCHMARKS.md, issue 15); 1.0 stays a configurable recency value.
RECENCY_GRID = (0.9, 0.8, 0.7, 0.5, 0.3)
_BATCH = 256  # queries scored at once: (256, n_items) float32


def choose_recency(
    frame: pl.DataFrame,
    n_users: int,
    n_items: int,
    config: BaseModel,
    kind: type[ItemGraphRecommender] = NeighborsRecommender,
    k: int = 10,
    max_users: int = 2000,
) -> tuple[float, dict[float, float]]:
    """(the chosen recency, NDCG@k per grid value) of source `kind` with its `config`;
    (RECENCY_GRID[0], {}) when no user has two interactions to learn from."""
    ordered = frame.sort([USER_IDX, TIMESTAMP, ROW]).with_columns(
        pl.int_range(pl.len()).over(USER_IDX).alias("_pos"), pl.len().over(USER_IDX).alias("_n")
    )
    newest = (pl.col("_pos") == pl.col("_n") - 1) & (pl.col("_n") >= 2)
    rest, held = ordered.filter(~newest), ordered.filter(newest)
    if held.height == 0:
        return RECENCY_GRID[0], {}
    users = held[USER_IDX].to_numpy()
    if users.size > max_users:
        users = np.sort(np.random.default_rng(0).choice(users, max_users, replace=False))
    target = dict(zip(held[USER_IDX].to_list(), held[ITEM_IDX].to_list(), strict=True))
    grouped = rest.group_by(USER_IDX).agg(pl.col(ITEM_IDX))  # rest is in time order per user
    history = dict(zip(grouped[USER_IDX].to_list(), grouped[ITEM_IDX].to_list(), strict=True))
    queries = [Query(int(u), np.asarray(history[u], dtype=np.int64)) for u in users]
    relevant = [np.array([target[u]]) for u in users]
    rest = rest.drop("_pos", "_n")
    model = kind.fit_frame(rest, n_users, n_items, config.model_copy(update={"recency": 1.0}))
    scores = {r: _ndcg(model.with_recency(r), queries, relevant, k) for r in RECENCY_GRID}
    return max(RECENCY_GRID, key=lambda r: scores[r]), scores  # first max: grid order


def _ndcg(
    model: ItemGraphRecommender, queries: list[Query], relevant: list[np.ndarray], k: int
) -> float:
    """Mean NDCG@k of the model's ranking, each query's history excluded."""
    out = []
    for start in range(0, len(queries), _BATCH):
        part = queries[start : start + _BATCH]
        ranked, _ = model.recommend(part, k, exclude=[q.history for q in part])
        out.append(per_user_metrics(ranked, relevant[start : start + _BATCH], k, ("ndcg",))["ndcg"])
    return float(np.concatenate(out).mean())
