"""Evaluation stage: ratio metrics of the live A/B over users. Reads the outcome of each exposure
(recsys.evaluation.exposures.outcomes); writes per-user sums and A-vs-B Cells whose CIs and
p-value come from the delta method, users being the independent units.
"""

from __future__ import annotations

import math

import polars as pl
from scipy import stats as sps

from recsys.evaluation.compare import Cell
from recsys.evaluation.compare import relative_lift as _lift
from recsys.evaluation.stats import delta_ztest, ratio_delta

# metric -> (numerator, denominator) of the per-user sums; the order of the report
LIVE_METRICS = {"hit_rate": ("hits", "exposures"), "ctr": ("engaged", "slots")}


def per_user_sums(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (user, variant): exposures, hits (exposures with any engagement), slots, engaged."""
    return (
        frame.group_by("user_id", "variant")
        .agg(
            pl.len().alias("exposures"),
            (pl.col("engaged") > 0).sum().alias("hits"),
            pl.col("slots").sum(),
            pl.col("engaged").sum(),
        )
        .sort("variant", "user_id")
    )


def ratio_cell(metric: str, segment: str, a: pl.DataFrame, b: pl.DataFrame, alpha: float) -> Cell:
    """One ratio metric, A vs B, from per-user sums: delta-method CIs and z-test."""
    num, den = LIVE_METRICS[metric]
    rate_a, var_a = ratio_delta(a[num].to_numpy(), a[den].to_numpy())
    rate_b, var_b = ratio_delta(b[num].to_numpy(), b[den].to_numpy())
    z = float(sps.norm.ppf(1 - alpha / 2))
    diff = rate_b - rate_a
    p = delta_ztest(rate_a, var_a, rate_b, var_b)
    return Cell(
        metric=metric,
        segment=segment,
        n_users=int(a.height + b.height),
        mean_a=rate_a,
        ci_a=_interval(rate_a, var_a, z),
        mean_b=rate_b,
        ci_b=_interval(rate_b, var_b, z),
        diff=diff,
        diff_ci=_interval(diff, var_a + var_b, z),
        lift=_lift(rate_a, rate_b),
        lift_ci=_lift_interval(rate_a, var_a, rate_b, var_b, z),
        p_values={"delta": p},
        p_value=p,
    )


def _interval(value: float, var: float, z: float) -> tuple[float, float]:
    if not (math.isfinite(value) and math.isfinite(var)):
        return math.nan, math.nan
    half = z * math.sqrt(var)
    return value - half, value + half


def _lift_interval(
    rate_a: float, var_a: float, rate_b: float, var_b: float, z: float
) -> tuple[float, float]:
    """CI of B/A - 1 from the delta method on log(B/A): Var = Var_A/A^2 + Var_B/B^2."""
    values = (rate_a, var_a, rate_b, var_b)
    if not all(math.isfinite(x) for x in values) or rate_a <= 0 or rate_b <= 0:
        return math.nan, math.nan
    log_ratio = math.log(rate_b / rate_a)
    half = z * math.sqrt(var_a / rate_a**2 + var_b / rate_b**2)
    return math.exp(log_ratio - half) - 1.0, math.exp(log_ratio + half) - 1.0
