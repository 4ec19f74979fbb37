"""CollabRecommender: the shared contract for LightFM, ALS and hybrid LightFM; known answers."""

import numpy as np
import pytest
import scipy.sparse as sp
from contract import RecommenderContract, contract_matrix

from recsys.config import CollabConfig
from recsys.ranking.base import Query
from recsys.ranking.collab import CollabRecommender

LIGHTFM = CollabConfig(model="lightfm", factors=8, epochs=20, threads=1)
ALS = CollabConfig(model="als", factors=8, iterations=10, regularization=1.0, threads=1)


class TestLightFMContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return CollabRecommender.fit(contract_matrix(), LIGHTFM)


class TestALSContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return CollabRecommender.fit(contract_matrix(), ALS)


class TestHybridLightFMContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        tokens = sp.csr_matrix(np.eye(3, dtype=np.float32)[np.arange(24) % 3])  # (24, 3) groups
        config = LIGHTFM.model_copy(update={"item_features": True})
        return CollabRecommender.fit(contract_matrix(), config, item_features=tokens)


def checkerboard(n=20):
    """Two user groups, each liking every item of its own half but one (user u misses item u)."""
    group = np.arange(n) // (n // 2)  # (n,) the group of user u and of item u
    dense = (group[:, None] == group[None, :]).astype(np.float32) - np.eye(n, dtype=np.float32)
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("config", [LIGHTFM, ALS], ids=["lightfm", "als"])
def test_checkerboard_users_get_items_of_their_own_half(config):
    matrix = checkerboard()
    rec = CollabRecommender.fit(matrix, config)
    users = np.arange(matrix.shape[0])
    queries = [Query(user_idx=int(u)) for u in users]
    idx, _ = rec.recommend(queries, 5)
    own_half = (users // 10)[:, None]  # (n_users, 1): 0 for the first group, 1 for the second
    assert (idx // 10 == own_half).all(), idx
    # with what they have seen excluded, the one own-half item each user misses comes first
    best, _ = rec.recommend(queries, 1, exclude=[matrix[u].indices for u in users])
    assert (best[:, 0] == users).all(), best
    # cold users known only by a few items are folded in to the half those items are in
    cold, _ = rec.recommend([Query(history=np.array([0, 1])), Query(history=np.array([12, 15]))], 3)
    assert (cold[0] < 10).all() and (cold[1] >= 10).all(), cold


@pytest.mark.parametrize("config", [LIGHTFM, ALS], ids=["lightfm", "als"])
def test_query_with_nothing_to_go_on_scores_minus_inf(config):
    rec = CollabRecommender.fit(contract_matrix(), config)
    queries = [Query(), Query(history=np.array([-1, 999])), Query(user_idx=10_000)]
    assert np.isneginf(rec.score(queries)).all()
    idx, _ = rec.recommend(queries, 4)
    assert (idx == -1).all()


@pytest.mark.parametrize("config", [LIGHTFM, ALS], ids=["lightfm", "als"])
def test_untrained_users_fold_in_and_untrained_items_are_not_scored(config):
    dense = contract_matrix().toarray()
    dense[3] = 0.0  # user 3 has no training interactions: their factors are noise
    dense[:, 5] = 0.0  # item 5 neither
    rec = CollabRecommender.fit(sp.csr_matrix(dense), config)
    history = np.array([0, 3, 6])
    as_user3 = rec.score([Query(user_idx=3, history=history)])
    as_cold = rec.score([Query(history=history)])
    np.testing.assert_array_equal(as_user3, as_cold)
    assert np.isneginf(as_cold[:, 5]).all() and np.isfinite(np.delete(as_cold, 5, axis=1)).all()
    idx, val = rec.similar_items(5, 3)
    assert (idx == -1).all() and np.isneginf(val).all()


@pytest.mark.parametrize("config", [LIGHTFM, ALS], ids=["lightfm", "als"])
def test_batched_recommend_users_equals_recommend(config):
    matrix = contract_matrix()
    rec = CollabRecommender.fit(matrix, config)
    users = np.arange(matrix.shape[0])
    allowed = np.arange(matrix.shape[1]) != 4
    fast_idx, fast_val = rec.recommend_users(users, 6, seen=matrix, allowed=allowed, batch_size=7)
    queries = [Query(user_idx=int(u)) for u in users]
    seen = [matrix[u].indices for u in users]
    slow_idx, slow_val = rec.recommend(queries, 6, exclude=seen, allowed=allowed)
    np.testing.assert_array_equal(fast_idx, slow_idx)
    np.testing.assert_allclose(fast_val, slow_val, rtol=1e-5)  # gemm vs gemv rounding


def test_recommend_users_rejects_bad_input():
    rec = CollabRecommender.fit(contract_matrix(), ALS)
    with pytest.raises(IndexError, match="out of range: model has 30 users"):
        rec.recommend_users(np.array([0, 30]), 3)
    with pytest.raises(ValueError, match=r"seen: expected shape \(30, 24\), found \(2, 24\)"):
        rec.recommend_users(np.array([0]), 3, seen=sp.csr_matrix((2, 24)))


def test_item_features_flag_and_matrix_must_agree():
    tokens = sp.csr_matrix(np.ones((24, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="item_features is true but no item_features matrix"):
        CollabRecommender.fit(contract_matrix(), LIGHTFM.model_copy(update={"item_features": True}))
    with pytest.raises(ValueError, match="CollabConfig.item_features is false"):
        CollabRecommender.fit(contract_matrix(), LIGHTFM, item_features=tokens)
    als = ALS.model_copy(update={"item_features": True})
    with pytest.raises(ValueError, match="ALS takes no item features"):
        CollabRecommender.fit(contract_matrix(), als, item_features=tokens)


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="collab.json"):
        CollabRecommender.load(tmp_path)
