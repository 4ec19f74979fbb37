"""Statistics: bootstrap CI coverage by simulation, Holm by hand, paired and proportion tests,
the delta method for ratio metrics over users, and the sample-ratio-mismatch test."""

import numpy as np
import pytest
from scipy import stats as sps

from recsys.config import EvalConfig
from recsys.evaluation.compare import compare
from recsys.evaluation.stats import (
    adjust_pvalues,
    bootstrap_means,
    delta_ztest,
    paired_tests,
    percentile_ci,
    ratio_delta,
    srm_pvalue,
    two_proportion_ztest,
    welch_ttest,
)


def test_bootstrap_is_seeded_and_matches_the_standard_error():
    rng = np.random.default_rng(3)
    values = rng.exponential(2.0, size=(500, 2))
    first = bootstrap_means(values, 400, seed=11)
    assert first.shape == (400, 2)
    np.testing.assert_array_equal(first, bootstrap_means(values, 400, seed=11))
    assert not np.array_equal(first, bootstrap_means(values, 400, seed=12))
    standard_error = values.std(axis=0) / np.sqrt(len(values))
    np.testing.assert_allclose(first.std(axis=0), standard_error, rtol=0.15)
    assert np.all(np.abs(first.mean(axis=0) - values.mean(axis=0)) < 2 * standard_error)


def test_bootstrap_in_small_chunks_is_still_a_bootstrap(monkeypatch):
    """Forcing 7 resamples per chunk: every chunk is drawn and the spread is still the SE."""
    import recsys.evaluation.stats as stats

    values = np.random.default_rng(4).normal(3.0, 2.0, size=200)
    monkeypatch.setattr(stats, "_BOOT_CELLS", 200 * 7)
    boot = stats.bootstrap_means(values, 600, seed=5)[:, 0]  # (600,), 86 chunks
    assert np.all(np.isfinite(boot)) and np.unique(boot).size > 590  # no chunk left unfilled
    assert boot.std() == pytest.approx(values.std() / np.sqrt(200), rel=0.15)


def test_ci_coverage_by_simulation():
    """200 simulated A/B experiments with known means: the 95% CIs of A's mean and of the
    difference must cover the truth in 90-99% of them."""
    rng = np.random.default_rng(2024)
    config = EvalConfig(bootstrap=200, seed=1)
    true_a, true_b = 0.3, 0.35
    covered_a = covered_diff = 0
    n_sims = 200
    for sim in range(n_sims):
        a = (rng.random(300) < true_a).astype(float)  # hit_rate-like per-user values
        b = (rng.random(300) < true_b).astype(float)
        cell = compare({"m": a}, {"m": b}, {}, config.model_copy(update={"seed": sim})).cells[0]
        covered_a += cell.ci_a[0] <= true_a <= cell.ci_a[1]
        covered_diff += cell.diff_ci[0] <= true_b - true_a <= cell.diff_ci[1]
    assert 0.90 <= covered_a / n_sims <= 0.99
    assert 0.90 <= covered_diff / n_sims <= 0.99


def test_percentile_ci_drops_non_finite_samples():
    samples = np.array([[1.0, np.inf], [2.0, np.nan], [3.0, np.inf]])
    low, high = percentile_ci(samples, alpha=0.5)
    assert low[0] == pytest.approx(1.5) and high[0] == pytest.approx(2.5)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_holm_hand_case():
    # sorted p: 0.01 (x4) = 0.04, 0.02 (x3) = 0.06, 0.03 (x2) = 0.06 (monotone), 0.5 (x1) = 0.5
    p = [0.03, 0.5, 0.01, 0.02]
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.06, 0.5, 0.04, 0.06])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.12, 1.0, 0.04, 0.08])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)


def test_holm_keeps_nan_out_of_the_family_and_caps_at_one():
    adjusted = adjust_pvalues([0.2, float("nan"), 0.6], "holm")
    assert adjusted[0] == pytest.approx(0.4)
    assert np.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.6)
    assert adjust_pvalues([0.9, 0.8], "holm").max() <= 1.0
    with pytest.raises(ValueError, match="'holm', 'bonferroni' or 'none'"):
        adjust_pvalues([0.1], "fdr")


def test_paired_tests():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert paired_tests(a, a) == {"ttest": 1.0, "wilcoxon": 1.0}
    assert paired_tests(a, a + 1.0) == {"ttest": 0.0, "wilcoxon": 0.0}  # constant shift
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = x + rng.normal(0.5, 1.0, size=60)
    got = paired_tests(x, y)
    assert got["ttest"] == pytest.approx(sps.ttest_rel(y, x).pvalue)
    assert got["ttest"] < 0.05 and got["wilcoxon"] < 0.05


def test_two_proportion_ztest_matches_chi_square():
    table = np.array([[30, 70], [45, 55]])  # hits / misses of A and B
    chi2 = sps.chi2_contingency(table, correction=False)
    assert two_proportion_ztest(30, 100, 45, 100) == pytest.approx(chi2.pvalue)
    assert two_proportion_ztest(0, 10, 0, 20) == 1.0
    assert np.isnan(two_proportion_ztest(1, 0, 1, 10))


def test_welch_ttest():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 50), rng.normal(0.2, 2, 70)
    assert welch_ttest(a, b) == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)
    assert welch_ttest(np.ones(3), np.ones(4)) == 1.0


def test_ratio_delta_hand_case():
    # R = 3 / 4; residuals y - R n = [0.25, -0.75, 0.5], sample variance 0.875 / 2;
    # Var(R) = 0.4375 / (3 users x mean(n)^2 = 16 / 9)
    rate, var = ratio_delta(np.array([1, 0, 2]), np.array([1, 1, 2]))
    assert rate == 0.75
    assert var == pytest.approx(0.4375 / (3 * 16 / 9))
    assert np.isnan(ratio_delta(np.array([1]), np.array([2]))[1])  # one user: no variance
    assert all(np.isnan(ratio_delta(np.array([]), np.array([]))))


def test_ratio_delta_matches_the_spread_over_repeated_experiments():
    """Users with many exposures and their own click propensity: the delta-method variance of
    hits / exposures is the variance of that ratio over repeated experiments, while the binomial
    variance (exposures taken as independent) is far too small."""
    rng = np.random.default_rng(5)
    rates, deltas, binomial = [], [], []
    for _ in range(400):
        exposures = 1 + rng.geometric(0.08, 300)  # (users,) heavy-tailed activity
        propensity = rng.beta(0.5, 2.0, 300)  # (users,) each user's own click rate
        hits = rng.binomial(exposures, propensity)
        rate, var = ratio_delta(hits, exposures)
        rates.append(rate)
        deltas.append(var)
        binomial.append(rate * (1 - rate) / exposures.sum())
    empirical = np.var(rates, ddof=1)
    assert np.mean(deltas) == pytest.approx(empirical, rel=0.2)
    assert np.mean(binomial) < empirical / 3


def test_delta_ztest():
    assert delta_ztest(0.2, 0.0001, 0.2, 0.0001) == 1.0
    z = 0.02 / np.sqrt(0.0002)
    assert delta_ztest(0.2, 0.0001, 0.22, 0.0001) == pytest.approx(2 * sps.norm.sf(z))
    assert delta_ztest(0.3, 0.0, 0.3, 0.0) == 1.0 and delta_ztest(0.3, 0.0, 0.4, 0.0) == 0.0
    assert np.isnan(delta_ztest(0.3, float("nan"), 0.4, 0.0))


def test_srm_pvalue():
    assert srm_pvalue([500, 500], [0.5, 0.5]) == 1.0
    assert srm_pvalue([600, 400], [1, 1]) == pytest.approx(sps.chisquare([600, 400]).pvalue)
    assert srm_pvalue([600, 400], [0.5, 0.5]) < 1e-9
    assert srm_pvalue([600, 400], [60, 40]) == 1.0  # shares are normalised
    three = srm_pvalue([700, 200, 100], [0.7, 0.2, 0.1])
    assert three == 1.0
    assert np.isnan(srm_pvalue([0, 0], [0.5, 0.5]))
    with pytest.raises(ValueError, match="one share per variant"):
        srm_pvalue([10, 10], [1.0])
