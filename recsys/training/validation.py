"""Training stage: validation of towers during training — rank all items, exclude train items.

Reads user and item vectors plus held-out interactions; writes mean Recall@k / NDCG@k through the
project's one metrics kernel (recsys.evaluation.metrics.per_user_metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.base import apply_exclusions, top_k
from recsys.schema import ITEM_IDX, USER_IDX

VALID_K = 10  # cut-off of the validation metrics that drive early stopping
_CHUNK = 1024  # users scored at once: (chunk, n_items) float32


@dataclass(frozen=True)
class HeldOut:
    """Users with held-out items: their histories (oldest first) and the items to find."""

    users: np.ndarray  # (n,) user_idx
    histories: list[np.ndarray]  # item_idx seen before, excluded from the ranking
    relevant: list[np.ndarray]  # held-out item_idx


def held_out(sequences: Sequence[np.ndarray], heldout: pl.DataFrame) -> HeldOut:
    """Held-out interactions grouped by user, each with the user's history from `sequences`."""
    grouped = heldout.group_by(USER_IDX, maintain_order=True).agg(pl.col(ITEM_IDX)).sort(USER_IDX)
    users = grouped[USER_IDX].to_numpy().astype(np.int64)
    relevant = [np.asarray(items, dtype=np.int64) for items in grouped[ITEM_IDX].to_list()]
    histories = [np.asarray(sequences[u], dtype=np.int64) for u in users]
    return HeldOut(users, histories, relevant)


def ranking_metrics(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    data: HeldOut,
    k: int = VALID_K,
) -> dict[str, float]:
    """Mean recall@k and ndcg@k of cosine ranking over the whole catalog, each user's history
    excluded. A zero user vector ranks nothing (all ties) and scores by item order: it is kept,
    so users the tower cannot encode count against it."""
    if len(data.users) == 0:
        return {"recall": 0.0, "ndcg": 0.0}
    sums = {"recall": 0.0, "ndcg": 0.0}
    for s in range(0, len(data.users), _CHUNK):
        scores = user_vectors[s : s + _CHUNK] @ item_vectors.T  # (chunk, n_items)
        apply_exclusions(scores, data.histories[s : s + _CHUNK], None)
        ranked, _ = top_k(scores, k)  # (chunk, k)
        metrics = per_user_metrics(ranked, data.relevant[s : s + _CHUNK], k, ("recall", "ndcg"))
        for name in sums:
            sums[name] += float(metrics[name].sum())
    return {name: total / len(data.users) for name, total in sums.items()}
