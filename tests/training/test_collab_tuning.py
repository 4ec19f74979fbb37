"""Choosing the collaborative model and its hyperparameters on validation (collab.model "auto",
collab.tune): real ALS and LightFM fits on a generated two-community matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.config import CollabConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.base import Query
from recsys.ranking.collab import CollabRecommender
from recsys.training.collab_tuning import GRIDS, candidates, tune_collab


def _world(n_users: int = 120, n_items: int = 40, seed: int = 0):
    """Two communities, each interacting only with its own half of the catalog; every user's
    held-out next item comes from their community's half."""
    rng = np.random.default_rng(seed)
    rows, cols, queries, relevant = [], [], [], []
    half = n_items // 2
    for u in range(n_users):
        own = np.arange(half) + (half if u % 2 else 0)
        picked = rng.choice(own, 7, replace=False)
        history, held = picked[:6], picked[6:]
        rows += [u] * history.size
        cols += history.tolist()
        queries.append(Query(u, history))
        relevant.append(held)
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), (n_users, n_items))
    return train, queries, relevant


def test_candidates_follow_model_and_tune():
    base = CollabConfig(model="als", factors=16, threads=1)
    assert candidates(base) == [base]  # neither auto nor tune: the configured values only
    auto = candidates(base.model_copy(update={"model": "auto"}))
    assert [c.model for c in auto] == ["als", "lightfm"] and auto[0].factors == 16
    tuned = candidates(base.model_copy(update={"model": "auto", "tune": True}))
    assert len(tuned) == len(GRIDS["als"]) + len(GRIDS["lightfm"])
    assert {(c.factors, c.regularization, c.alpha) for c in tuned if c.model == "als"} == {
        (p["factors"], p["regularization"], p["alpha"]) for p in GRIDS["als"]
    }
    assert all(c.threads == 1 for c in tuned)  # what is not tuned stays as configured


def test_the_choice_is_the_best_validation_score_and_refits_to_it():
    train, queries, relevant = _world()
    config = CollabConfig(model="auto", tune=True, threads=1, epochs=10, iterations=5)
    chosen, scores = tune_collab(train, queries, relevant, config, k=5)
    assert len(scores) == len(candidates(config))
    assert {s["config"]["model"] for s in scores} == {"als", "lightfm"}
    best = max(scores, key=lambda s: s["ndcg"])
    assert chosen.model_dump(include=set(best["config"])) == best["config"]
    # random ranking: NDCG@5 0.087 (1 of 34 unseen items); knowing the community: 0.21 (1 of 14)
    assert best["ndcg"] > 0.15
    if chosen.model == "als":  # ALS is deterministic here: refitting the choice gives its score
        again = CollabRecommender.fit(train, chosen)
        ranked, _ = again.recommend(queries, 5, [q.history for q in queries])
        assert per_user_metrics(ranked, relevant, 5, ("ndcg",))["ndcg"].mean() == pytest.approx(
            best["ndcg"]
        )


def test_no_validation_queries_is_a_clear_error():
    train, _, _ = _world()
    with pytest.raises(ValueError, match="expected validation queries, found none"):
        tune_collab(train, [], [], CollabConfig(model="auto"))


def test_auto_is_never_fitted_directly():
    train, _, _ = _world()
    with pytest.raises(ValueError, match="'auto' is chosen by the nightly's tune step"):
        CollabRecommender.fit(train, CollabConfig(model="auto"))
