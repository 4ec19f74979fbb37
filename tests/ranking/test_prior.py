"""Text popularity prior: ridge known answer, centring, only never-interacted items biased."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from recsys.ranking.prior import cold_item_bias, fit_text_prior


def _world(n=600, hidden=24, seed=0):
    """Item features whose direction determines popularity: log(1 + count) ~ 4 + 6 * w.unit(x)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, hidden)) * rng.uniform(0.5, 3.0, size=(n, 1))  # any norm
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    w = rng.normal(size=hidden)
    w /= np.linalg.norm(w)
    counts = np.maximum(np.round(np.expm1(4 + 6 * unit @ w)), 1).astype(np.int64)
    return features, counts, np.log1p(counts)


def test_ridge_recovers_a_linear_popularity_from_text():
    features, counts, log_count = _world()
    fit, held = slice(0, 500), slice(500, None)
    prior = fit_text_prior(features[fit], counts[fit], lam=1e-3)
    predicted = prior.predict(features[held])
    assert spearmanr(predicted, log_count[held]).statistic > 0.95
    # centred on the fitted items: predict = log(1 + count) - its mean there
    np.testing.assert_allclose(
        predicted, np.log1p(counts[held]) - np.log1p(counts[fit]).mean(), atol=0.1
    )
    assert abs(prior.predict(features[fit]).mean()) < 1e-9


def test_bias_only_on_items_without_interactions_and_scales_with_weight():
    features, counts, _ = _world(seed=1)
    counts = counts.copy()
    cold = np.arange(0, 600, 10)
    counts[cold] = 0
    bias = cold_item_bias(features, counts, scale=0.05)
    assert bias.dtype == np.float32 and bias.shape == (600,)
    assert (bias[counts > 0] == 0).all() and (bias[cold] != 0).all()
    _, _, truth = _world(seed=1)
    assert spearmanr(bias[cold], truth[cold]).statistic > 0.9  # predicts the hidden popularity
    np.testing.assert_allclose(cold_item_bias(features, counts, scale=0.1), 2 * bias, rtol=1e-5)
    assert not cold_item_bias(features, counts, scale=0.0).any()
    assert not cold_item_bias(features, np.maximum(counts, 1), scale=0.05).any()  # none cold
    assert not cold_item_bias(features, np.zeros(600), scale=0.05).any()  # nothing to fit


def test_bad_input_is_reported():
    features, counts, _ = _world(n=50)
    with pytest.raises(ValueError, match=r"expected features \(n_items, hidden\) and counts"):
        fit_text_prior(features, counts[:10])
    with pytest.raises(ValueError, match="no item has an interaction"):
        fit_text_prior(features, np.zeros(50))
    prior = fit_text_prior(features, counts)
    with pytest.raises(ValueError, match="expected features of width 24"):
        prior.predict(np.ones((3, 5)))
