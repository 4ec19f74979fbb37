"""Evaluation stage: A/B statistics; reads per-user values, writes CIs, p-values, corrections.

Bootstrap confidence intervals, paired and two-sample tests, the delta method for ratio metrics
over users, the sample-ratio-mismatch test, Holm / Bonferroni corrections.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

_BOOT_CELLS = 2_000_000  # resample indices drawn per chunk (memory ~16 MB)


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of `n_boot` bootstrap resamples of the rows, every column resampled together.

    values: (n, m) -> (n_boot, m). Rows are resampled with replacement; a resample is stored as
    per-row counts so the means are one matrix product, (chunk, n) @ (n, m).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    if n == 0:
        return np.full((n_boot, values.shape[1]), np.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _BOOT_CELLS // n))
    out = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n), dtype=np.int32)  # (b, n) resampled rows
        idx += (np.arange(b, dtype=np.int32) * n)[:, None]  # offset per resample, b * n < 2**31
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)  # (b, n)
        out[start : start + b] = counts @ values / n
    return out


def percentile_ci(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap samples (n_boot, m) -> lower (m,), upper (m,).

    Non-finite samples (a lift over a zero mean) are dropped; all non-finite -> nan.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    masked = np.where(np.isfinite(samples), samples, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns give nan, on purpose
        lower = np.nanquantile(masked, alpha / 2, axis=0)
        upper = np.nanquantile(masked, 1 - alpha / 2, axis=0)
    return lower, upper


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided p-values for 'B and A differ' on paired per-user values: t-test and Wilcoxon.

    Identical variants (all differences zero) give p = 1; a constant non-zero difference gives 0.
    """
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)  # (n,)
    if diff.size < 2:
        return {"ttest": float("nan"), "wilcoxon": float("nan")}
    if np.all(diff == diff[0]):
        p = 1.0 if diff[0] == 0 else 0.0
        return {"ttest": p, "wilcoxon": p}
    t_p = float(sps.ttest_rel(b, a).pvalue)
    nonzero = diff[diff != 0]  # "wilcox": users both variants scored the same are dropped
    # exact null distribution only for small samples without ties; else the normal approximation
    # (scipy's "auto" falls back to a permutation test on ties: seconds per call at 1k users)
    exact = nonzero.size <= 25 and np.unique(np.abs(nonzero)).size == nonzero.size
    method = "exact" if exact else "approx"
    w_p = float(sps.wilcoxon(nonzero, zero_method="wilcox", method=method).pvalue)
    return {"ttest": t_p, "wilcoxon": w_p}


def two_proportion_ztest(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (nan when a group is empty).

    It takes every trial as independent: right for one trial per user, wrong for many exposures
    per user (use ratio_delta + delta_ztest there)."""
    if n_a == 0 or n_b == 0:
        return float("nan")
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 1.0  # both all-hit or both all-miss: no evidence of a difference
    z = (hits_b / n_b - hits_a / n_a) / se
    return float(2 * sps.norm.sf(abs(z)))


def welch_ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test on independent samples (nan when one is too small)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan")
    if a.var() == 0 and b.var() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(sps.ttest_ind(b, a, equal_var=False).pvalue)


def adjust_pvalues(pvalues: Sequence[float], method: str) -> np.ndarray:
    """Family-wise corrected p-values: 'holm', 'bonferroni' or 'none'. nan entries stay nan and
    are not counted in the family."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if method == "none":
        out[ok] = p[ok]
    elif method == "bonferroni":
        out[ok] = np.minimum(p[ok] * m, 1.0)
    elif method == "holm":
        order = ok[np.argsort(p[ok], kind="stable")]  # ascending p
        scaled = p[order] * (m - np.arange(m))  # p_(i) * (m - i + 1), 1-based i
        out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)  # keep them monotone
    else:
        raise ValueError(f"correction: expected 'holm', 'bonferroni' or 'none', found {method!r}")
    return out


def ratio_delta(numerators: np.ndarray, denominators: np.ndarray) -> tuple[float, float]:
    """A ratio metric over users, sum(y) / sum(n), and its variance by the delta method.

    numerators, denominators: (n_users,) per-user sums (e.g. hits and exposures). Users are the
    independent units, so a heavy user's exposures move together: Var(R) = Var(y - R n) /
    (n_users * mean(n)^2). nan variance with fewer than 2 users or no denominator.
    """
    y = np.asarray(numerators, dtype=np.float64)
    n = np.asarray(denominators, dtype=np.float64)
    total = n.sum()
    if y.size == 0 or total <= 0:
        return float("nan"), float("nan")
    ratio = float(y.sum() / total)
    if y.size < 2:
        return ratio, float("nan")
    residual = y - ratio * n  # (n_users,), mean 0 by construction
    var = float(residual.var(ddof=1) / (y.size * n.mean() ** 2))
    return ratio, var


def delta_ztest(rate_a: float, var_a: float, rate_b: float, var_b: float) -> float:
    """Two-sided p-value of 'B's ratio differs from A's' from their delta-method variances.

    Both variances 0 (every user has the same ratio): p = 1 if the ratios are equal, else 0.
    """
    if not all(np.isfinite([rate_a, var_a, rate_b, var_b])):
        return float("nan")
    se = float(np.sqrt(var_a + var_b))
    if se == 0:
        return 1.0 if rate_a == rate_b else 0.0
    return float(2 * sps.norm.sf(abs(rate_b - rate_a) / se))


def srm_pvalue(observed: Sequence[int], shares: Sequence[float]) -> float:
    """Sample-ratio-mismatch test: chi-square goodness of fit of the users per variant to the
    configured traffic shares (normalised here). nan when there are no users."""
    counts = np.asarray(observed, dtype=np.float64)
    expected_share = np.asarray(shares, dtype=np.float64)
    if counts.shape != expected_share.shape or counts.size < 2:
        raise ValueError(
            f"srm: expected one share per variant (>= 2), found {counts.size} counts and "
            f"{expected_share.size} shares"
        )
    total = counts.sum()
    if total == 0:
        return float("nan")
    expected = total * expected_share / expected_share.sum()
    return float(sps.chisquare(counts, expected).pvalue)
