"""LightFMModel: vectorised scores equal LightFM.predict, hybrid features, npz round trip, and
several fits served as one (collab.fits)."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.collab.factors import ARRAYS_FILE, META_FILE
from recsys.collab.lightfm_model import LightFMModel, hybrid_features
from recsys.config import CollabConfig

CONFIG = CollabConfig(factors=8, epochs=10, threads=1, fits=1)


def interactions(n_users=24, n_items=18, seed=0):
    """Two user groups, each preferring one half of the items; binary."""
    rng = np.random.default_rng(seed)
    same = (np.arange(n_users)[:, None] % 2) == (np.arange(n_items)[None, :] % 2)
    dense = rng.random((n_users, n_items)) < np.where(same, 0.7, 0.05)
    return sp.csr_matrix(dense.astype(np.float32))


def group_tokens(n_items=18):
    """(n_items, 2) one token per item parity."""
    return sp.csr_matrix(np.eye(2, dtype=np.float32)[np.arange(n_items) % 2])


@pytest.mark.parametrize("hybrid", [False, True], ids=["plain", "hybrid"])
def test_scores_equal_lightfm_predict(hybrid):
    matrix = interactions()
    tokens = group_tokens() if hybrid else None
    model = LightFMModel.fit(matrix, CONFIG, tokens)
    n_users, n_items = matrix.shape
    users = np.repeat(np.arange(n_users), n_items).astype(np.int32)
    items = np.tile(np.arange(n_items), n_users).astype(np.int32)
    features = hybrid_features(tokens) if hybrid else None
    expected = model.lightfm.predict(users, items, item_features=features)
    ours = model.score_users(np.arange(n_users))  # (n_users, n_items)
    np.testing.assert_allclose(ours.ravel(), expected, rtol=1e-5, atol=1e-5)


def test_hybrid_features_are_identity_plus_tokens_normalised():
    features = hybrid_features(sp.csr_matrix(np.array([[1, 1], [0, 0]], dtype=np.float32)))
    expected = np.array([[1, 0, 1, 1], [0, 1, 0, 0]], dtype=np.float32)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(features.toarray(), expected)


def test_hybrid_cold_item_is_scored_from_its_tokens():
    matrix = interactions(n_items=20).tolil()
    matrix[:, 18:] = 0  # items 18 (even) and 19 (odd) have no interactions: cold
    matrix = matrix.tocsr()
    config = CONFIG.model_copy(update={"item_features": True, "epochs": 30})
    model = LightFMModel.fit(matrix, config, group_tokens(20))
    assert model.item_trained.all()  # every item has tokens, so every item has a vector
    scores = model.score_users(np.arange(24))  # (24, 20)
    even_users, odd_users = scores[0::2], scores[1::2]
    assert even_users[:, 18].mean() > odd_users[:, 18].mean()
    assert odd_users[:, 19].mean() > even_users[:, 19].mean()
    plain = LightFMModel.fit(matrix, CONFIG)
    assert not plain.item_trained[18:].any() and plain.item_trained[:18].all()


def test_fold_in_is_the_mean_of_history_item_vectors():
    model = LightFMModel.fit(interactions(), CONFIG)
    vectors = model.fold_in([np.array([1, 3, 3, -1, 99]), np.array([], dtype=np.int64)])
    expected = model.item_factors[[1, 3, 3]].mean(axis=0)
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-6)
    assert not vectors[1].any()


@pytest.mark.parametrize("hybrid", [False, True], ids=["plain", "hybrid"])
def test_save_load_scores_identically_without_pickle(tmp_path, hybrid):
    tokens = group_tokens() if hybrid else None
    config = CONFIG.model_copy(update={"item_features": hybrid})
    model = LightFMModel.fit(interactions(), config, tokens)
    model.save(tmp_path)
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["kind"] == "lightfm" and meta["config"]["item_features"] == hybrid
    loaded = LightFMModel.from_arrays(config, dict(np.load(tmp_path / ARRAYS_FILE)))
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    np.testing.assert_array_equal(loaded.item_trained, model.item_trained)
    history = [np.array([0, 2, 4])]
    np.testing.assert_array_equal(loaded.fold_in(history), model.fold_in(history))


def test_same_seed_single_thread_is_deterministic():
    a = LightFMModel.fit(interactions(), CONFIG)
    b = LightFMModel.fit(interactions(), CONFIG)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    c = LightFMModel.fit(interactions(), CONFIG.model_copy(update={"seed": 7}))
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_weights_reach_lightfm_and_kos_refuses_them():
    weighted = interactions() * 3.0
    assert not np.array_equal(
        LightFMModel.fit(weighted, CONFIG).item_factors,
        LightFMModel.fit(interactions(), CONFIG).item_factors,
    )
    with pytest.raises(ValueError, match="warp-kos.*weights"):
        LightFMModel.fit(weighted, CONFIG.model_copy(update={"loss": "warp-kos"}))


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="expected a scipy.sparse matrix, found ndarray"):
        LightFMModel.fit(np.ones((3, 3)), CONFIG)
    bad = sp.csr_matrix(np.array([[1.0, np.nan], [1.0, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"finite weights.*user rows \[0\]"):
        LightFMModel.fit(bad, CONFIG)
    with pytest.raises(ValueError, match="item_features: expected 18 rows.*found 5"):
        LightFMModel.fit(interactions(), CONFIG, sp.csr_matrix((5, 2)))


@pytest.mark.parametrize("hybrid", [False, True], ids=["plain", "hybrid"])
def test_several_fits_score_the_sum_of_their_seeds_models(tmp_path, hybrid):
    """collab.fits = 3: fits from seeds 42, 43, 44 served as one model whose scores, for known
    users and folded-in histories alike, are the sum of the three fits' scores."""
    matrix, tokens = interactions(), group_tokens() if hybrid else None
    config = CONFIG.model_copy(update={"item_features": hybrid})
    singles = [
        LightFMModel.fit(matrix, config.model_copy(update={"seed": 42 + n}), tokens)
        for n in range(3)
    ]
    joined = LightFMModel.fit(matrix, config.model_copy(update={"fits": 3}), tokens)
    users = np.arange(matrix.shape[0])
    np.testing.assert_allclose(
        joined.score_users(users), sum(m.score_users(users) for m in singles), rtol=1e-5, atol=1e-5
    )
    history = [np.array([1, 3, 4])]
    folded = [m.score_vectors(m.fold_in(history)) for m in singles]
    np.testing.assert_allclose(
        joined.score_vectors(joined.fold_in(history)), sum(folded), rtol=1e-5, atol=1e-5
    )
    assert joined.item_factors.shape[1] == 3 * config.factors
    joined.save(tmp_path)
    loaded = LightFMModel.from_arrays(config, dict(np.load(tmp_path / ARRAYS_FILE)))
    np.testing.assert_array_equal(loaded.score_users(users), joined.score_users(users))


def test_fits_on_all_cores_run_side_by_side_and_repeat_the_one_thread_fits(monkeypatch):
    """threads = 0 (all cores) with fits = 2: the fits run side by side, the cores shared among
    them; with no more cores than fits each has one thread, so the joined model is bit for bit
    the one two 1-thread fits in turn give (same seeds, same order)."""
    matrix = interactions(n_users=60, n_items=40)
    config = CONFIG.model_copy(update={"fits": 2, "epochs": 20})
    in_turn = LightFMModel.fit(matrix, config)  # threads = 1: one after the other
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    threads = []
    fit_one = LightFMModel._fit_one.__func__

    def spy(cls, matrix, one, item_features):
        threads.append((one.seed, one.threads))
        return fit_one(cls, matrix, one, item_features)

    monkeypatch.setattr(LightFMModel, "_fit_one", classmethod(spy))
    side_by_side = LightFMModel.fit(matrix, config.model_copy(update={"threads": 0}))
    assert sorted(threads) == [(42, 1), (43, 1)]
    assert side_by_side.config.threads == 0  # the saved config is the one asked for
    users = np.arange(matrix.shape[0])
    np.testing.assert_array_equal(side_by_side.score_users(users), in_turn.score_users(users))
    np.testing.assert_array_equal(side_by_side.item_factors, in_turn.item_factors)
