"""Training stage: choosing the collaborative model and its hyperparameters on validation.

Reads the interaction matrix of the split's training part and the validation queries (each
user's training history, the held-out next interaction); fits every grid point of the candidate
models and returns the CollabConfig with the best validation NDCG@k, with every point's score.
The grid is fixed and enumerated in order, so the choice is deterministic for a given data set
(LightFM with threads > 1 is itself not bit-for-bit repeatable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.config import CollabConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.base import Query
from recsys.ranking.collab import CollabRecommender

# The points tried per model (merged over the configured CollabConfig). ALS: the confidence scale
# and the regularisation matter most on sparse data; LightFM: the learning rate. Both at two sizes.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "als": [
        {"factors": f, "regularization": r, "alpha": a}
        for f in (64, 128)
        for r in (0.01, 0.1)
        for a in (1.0, 10.0)
    ],
    "lightfm": [{"factors": f, "learning_rate": lr} for f in (64, 128) for lr in (0.05, 0.025)],
}


def candidates(config: CollabConfig) -> list[CollabConfig]:
    """The configs the tuning step fits: with model "auto" both models, else the configured one;
    with `tune` every grid point, else the configured values only."""
    models = ["als", "lightfm"] if config.model == "auto" else [config.model]
    out = []
    for model in models:
        points = GRIDS[model] if config.tune else [{}]
        out += [config.model_copy(update={"model": model, **point}) for point in points]
    return out


def tune_collab(
    train: sp.csr_matrix,
    queries: Sequence[Query],
    relevant: Sequence[np.ndarray],
    config: CollabConfig,
    k: int = 10,
    item_features: sp.spmatrix | None = None,
) -> tuple[CollabConfig, list[dict[str, Any]]]:
    """The candidate with the best mean validation NDCG@k (ties: the earlier one), and each
    candidate's {"config": the fields that vary, "ndcg": score}. `train` is (n_users, n_items),
    `queries` carry each validation user's training history (excluded from the ranking)."""
    if not queries:
        raise ValueError("tune_collab: expected validation queries, found none")
    best, best_ndcg, scores = None, -1.0, []
    for candidate in candidates(config):
        recommender = CollabRecommender.fit(train, candidate, item_features)
        ranked, _ = recommender.recommend(queries, k, [q.history for q in queries])
        ndcg = float(per_user_metrics(ranked, relevant, k, ("ndcg",))["ndcg"].mean())
        varying = {"model", *GRIDS[candidate.model][0]}
        scores.append({"config": candidate.model_dump(include=varying), "ndcg": ndcg})
        if ndcg > best_ndcg:
            best, best_ndcg = candidate, ndcg
    assert best is not None
    return best, scores
