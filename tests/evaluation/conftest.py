"""Synthetic A/B data with a known answer: lists that hit the held-out item at a planted rate."""

import numpy as np
import pytest

from recsys.evaluation.evaluate import EvalInput

N_ITEMS, K = 300, 10


def _lists(rng, held_out: np.ndarray, p_hit: float, k: int = K) -> np.ndarray:
    """(n, k) distinct random items; with probability p_hit the held-out item is put at a random
    rank, otherwise it is removed from the list."""
    n = held_out.size
    keys = rng.random((n, N_ITEMS))  # (n, n_items): a random order of the catalog per user
    keys[np.arange(n), held_out] = 2.0  # never drawn at random
    ranked = np.argsort(keys, axis=1)[:, :k].astype(np.int64)  # (n, k)
    hit = rng.random(n) < p_hit
    rank = rng.integers(0, k, n)
    ranked[hit, rank[hit]] = held_out[hit]
    return ranked


@pytest.fixture(scope="session")
def synthetic():
    """make(n_users, p_a, p_b, seed) -> (ranked_a, ranked_b, EvalInput)."""

    def make(n_users: int = 1500, p_a: float = 0.2, p_b: float = 0.2, seed: int = 0):
        rng = np.random.default_rng(seed)
        popularity = np.floor(rng.pareto(1.2, N_ITEMS) * 5)  # (n_items,) long tail, some zeros
        held_out = rng.integers(0, N_ITEMS, n_users)  # (n,)
        data = EvalInput(
            relevant=[np.array([i]) for i in held_out],
            history_lengths=rng.integers(0, 120, n_users),
            item_popularity=popularity,
            item_vectors=rng.normal(size=(N_ITEMS, 8)),
        )
        return _lists(rng, held_out, p_a), _lists(rng, held_out, p_b), data

    return make
