"""Benchmark (evaluation stage): how often the live A/B report promotes a copy of the control.

Simulated experiments (tests/evaluation/live_traffic.py, the traffic the tests use): users split
50/50, a heavy-tailed number of exposures each, each user's own click propensity, anonymous
exposures in the control. For each experiment, beside each other on the same traffic:
- ours: recsys.evaluation.live.live_ab_report (users as units, delta method, anonymous apart);
- the exposure-level read this replaced: every exposure an independent trial (two-proportion
  z-test on hit rate), with and without the anonymous exposures counted as control misses.
With --click-b above --click-a the same loop measures power (how often a real gain promotes).

    .venv/bin/python benchmarks/ab_false_promote.py [--experiments 200] [--click-b 0.15]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import common
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "evaluation"))  # the simulator the tests use

from live_traffic import DAY, T0, WINDOW, traffic  # noqa: E402

from recsys.config import EvalConfig  # noqa: E402
from recsys.evaluation.exposures import outcomes  # noqa: E402
from recsys.evaluation.live import live_ab_report  # noqa: E402
from recsys.evaluation.stats import two_proportion_ztest  # noqa: E402


def exposure_level(exposures: pl.DataFrame, interactions: pl.DataFrame, alpha: float) -> str:
    """The old read's decision: exposures as independent trials (anonymous ones as misses)."""
    frame = outcomes(exposures, interactions, WINDOW, 10).filter(
        pl.col("time") + WINDOW <= T0 + 12 * DAY
    )
    rows = (
        frame.with_columns(hit=pl.col("engaged") > 0)
        .group_by("variant")
        .agg(pl.col("hit").sum(), pl.len())
        .sort("variant")
    )
    (ha, na), (hb, nb) = [(h, n) for _, h, n in rows.iter_rows()]
    if two_proportion_ztest(ha, na, hb, nb) >= alpha:
        return "inconclusive"
    return "promote" if hb / nb > ha / na else "hold"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--anonymous", type=int, default=60, help="anonymous exposures in A")
    parser.add_argument("--click-a", type=float, default=0.15)
    parser.add_argument("--click-b", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    common.header("live A/B: false PROMOTE rate (A/A) or power (A/B)")
    config = EvalConfig()
    counts = {name: {} for name in ("ours", "exposure-level", "exposure-level, no anonymous")}
    for i in range(args.experiments):
        exposures, interactions = traffic(
            args.users, args.click_a, args.click_b, anonymous_a=args.anonymous, seed=args.seed + i
        )
        result = live_ab_report(
            exposures, interactions, WINDOW, 10, config, shares={"A": 0.5, "B": 0.5}
        )
        identified = exposures.filter(pl.col("user_id").is_not_null())
        old = exposure_level(exposures, interactions, config.alpha)
        old_identified = exposure_level(identified, interactions, config.alpha)
        for name, decision in (
            ("ours", result.verdict.decision),
            ("exposure-level", old),
            ("exposure-level, no anonymous", old_identified),
        ):
            counts[name][decision] = counts[name].get(decision, 0) + 1
    n, alpha = args.experiments, config.alpha
    bound = alpha + 2 * math.sqrt(alpha * (1 - alpha) / n)
    print(
        f"{n} experiments, {args.users} users each, {args.anonymous} anonymous exposures in A, "
        f"mean click propensity A {args.click_a} B {args.click_b}, alpha {alpha}"
    )
    if args.click_a == args.click_b:
        print(f"A/A: a PROMOTE is false; bound alpha + 2 SE = {bound:.3f}")
    for name, found in counts.items():
        shares = "  ".join(f"{d} {found.get(d, 0) / n:.3f}" for d in sorted(found))
        print(f"  {name:30s} {shares}")


if __name__ == "__main__":
    main()
