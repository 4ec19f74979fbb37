"""Evaluation stage: the live A/B report. Reads the exposure frame (recsys.evaluation.exposures),
the interactions that followed and the configured traffic shares; writes a Comparison of two
variants on hit rate and CTR at k, its Verdict and ReportExtras (rendered by report.py).

Right by construction:
- the unit is the user: each identified user's exposures are summed (exposures, hits, slots,
  engaged) and users are the independent draws; a heavy user never counts as many samples;
- exposures without a user id never enter the comparison (they cannot be matched to what the
  user did next); they are counted per variant and reported beside it;
- users seen in more than one variant (routing changed mid-window) are left out, with a warning;
- hit rate = hits / exposures and CTR = engaged / slots are ratio metrics: their variances come
  from the delta method over users, and the verdict from the z-test on them (`live_primary_metric`
  decides; the other metric and the per-bundle split are exploratory);
- a sample-ratio-mismatch chi-square test of users per variant against the configured shares;
  when it fails (p < srm_alpha) there is no verdict, and the report says why;
- a variant that served more than one bundle in the window is warned about and split by bundle.
An exposure is a hit when its user interacted with one of its top-k items within
[time, time + window]; exposures whose window is still open at the end of the interactions are
left out (their outcome is not known yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from recsys.config import EvalConfig
from recsys.data.timestamps import parse_timestamps
from recsys.evaluation import live_checks as checks
from recsys.evaluation.compare import ALL_USERS, Cell, Comparison, adjust, assign_families
from recsys.evaluation.exposures import ExposureLogError, outcomes
from recsys.evaluation.ratios import LIVE_METRICS, per_user_sums, ratio_cell
from recsys.evaluation.report import ReportExtras
from recsys.evaluation.stats import ratio_delta
from recsys.evaluation.tables import Table
from recsys.evaluation.verdict import Verdict, verdict, withheld
from recsys.schema import ITEM_ID, TIMESTAMP


@dataclass
class LiveABResult:
    comparison: Comparison
    verdict: Verdict
    extras: ReportExtras
    sample_ratio: checks.SampleRatio
    per_user: pl.DataFrame  # user_id, variant, exposures, hits, slots, engaged


def live_ab_report(
    exposures: pl.DataFrame,
    interactions: pl.DataFrame,
    window_seconds: int,
    k: int,
    config: EvalConfig | None = None,
    variants: tuple[str, str] | None = None,
    observed_until: int | None = None,
    shares: Mapping[str, float] | None = None,
) -> LiveABResult:
    """Compare two variants of the live traffic (module docstring).

    variants: (control, treatment); default the log's two variants in the order of `shares`
    (the first configured variant is the API's control), else sorted.
    observed_until: epoch s up to which interactions are complete; default their latest time.
    shares: the configured traffic share of every variant ([serving] variants); None: equal.
    """
    config = config or EvalConfig()
    config = config.model_copy(
        update={"k": k, "primary_metric": config.live_primary_metric, "primary_family": []}
    )
    names = _pick_variants(exposures, variants, shares)
    identified = exposures.filter(pl.col("user_id").is_not_null())
    crossed = checks.crossover_users(identified)
    clean = identified.filter(~pl.col("user_id").is_in(crossed))
    ratio = checks.sample_ratio(checks.users_per_variant(clean), shares, config.srm_alpha)
    frame = outcomes(clean.filter(pl.col("variant").is_in(names)), interactions, window_seconds, k)
    if observed_until is None:
        observed_until = int(parse_timestamps(interactions[TIMESTAMP]).max() or 0)
    complete, dropped = _complete(frame, names, window_seconds, observed_until)
    per_user = per_user_sums(complete)
    comparison = _comparison(complete, per_user, names, config)
    spans = checks.bundle_spans(exposures.filter(pl.col("variant").is_in(names)))
    warnings = checks.mixed_bundle_warnings(spans)
    if crossed:
        warnings.append(
            f"{len(crossed)} user(s) were shown more than one variant in the window (routing or "
            f"salt changed?), e.g. {crossed[:3]}; they are left out of every figure"
        )
    if ratio.failed:
        why = (
            f"Sample ratio mismatch: {ratio.describe()}. The users are not split as configured, "
            "so the groups may differ in more than the variant; fix the routing or the logging "
            "before reading this test"
        )
        result = withheld(comparison, config, why, warnings)
    else:
        result = verdict(comparison, config)
        result.warnings = warnings
    extras = _extras(exposures, complete, per_user, names, spans, ratio, dropped, window_seconds)
    extras.recommended_popularity = _shown_popularity(complete, names, interactions, k)
    return LiveABResult(comparison, result, extras, ratio, per_user)


def _comparison(
    complete: pl.DataFrame, per_user: pl.DataFrame, names: tuple[str, str], config: EvalConfig
) -> Comparison:
    """Both metrics over all users (primary family: live_primary_metric), then the exploratory
    per-bundle split."""
    comparison = Comparison(
        name_a=names[0],
        name_b=names[1],
        k=config.k,
        test="delta",
        correction=config.correction,
        alpha=config.alpha,
        n_bootstrap=0,
        seed=config.seed,
        unit="users",
    )
    a, b = (per_user.filter(pl.col("variant") == n) for n in names)
    comparison.cells = [ratio_cell(m, ALL_USERS, a, b, config.alpha) for m in LIVE_METRICS]
    comparison.cells += _bundle_cells(complete, names, config.alpha)
    assign_families(comparison, [config.primary_metric])
    adjust(comparison)
    return comparison


def _bundle_cells(complete: pl.DataFrame, names: tuple[str, str], alpha: float) -> list[Cell]:
    """For a variant that served several bundles: each bundle's exposures against the other
    variant's exposures over the same span of time (segment 'while V served BUNDLE')."""
    cells = []
    for side, variant in enumerate(names):
        mine = complete.filter(pl.col("variant") == variant)
        bundles = (
            mine.filter(pl.col("bundle").is_not_null())
            .group_by("bundle")
            .agg(pl.col("time").min().alias("t0"), pl.col("time").max().alias("t1"))
        )
        if bundles.height < 2:
            continue
        other = complete.filter(pl.col("variant") == names[1 - side])
        for bundle, t0, t1 in bundles.sort("t0").iter_rows():
            here = per_user_sums(mine.filter(pl.col("bundle") == bundle))
            there = per_user_sums(other.filter(pl.col("time").is_between(t0, t1)))
            a, b = (here, there) if side == 0 else (there, here)
            segment = f"while {variant} served {bundle}"
            cells += [ratio_cell(m, segment, a, b, alpha) for m in LIVE_METRICS]
    return cells


def _complete(
    frame: pl.DataFrame, names: tuple[str, str], window_seconds: int, until: int
) -> tuple[pl.DataFrame, int]:
    """The exposures whose window closed by `until`, and how many were left out."""
    complete = frame.filter(pl.col("time") + window_seconds <= until)
    dropped = frame.height - complete.height
    for name in names:
        if complete.filter(pl.col("variant") == name).height == 0:
            raise ExposureLogError(
                f"variant {name!r}: no exposure of an identified user with a complete "
                f"{window_seconds} s window before {until} (the end of the interactions); "
                f"{dropped} exposure(s) left out as too recent"
            )
    return complete, dropped


def _pick_variants(
    exposures: pl.DataFrame, variants: tuple[str, str] | None, shares: Mapping | None
) -> tuple[str, str]:
    """(control, treatment): as given; else the log's two variants in the configured order (the
    first configured variant is the control, as the API routes it); else sorted by name."""
    found = sorted(exposures["variant"].unique().to_list())
    if variants is None:
        if len(found) != 2:
            raise ExposureLogError(
                f"exposure log: expected 2 variants to compare, found {found}; name them with "
                "--variants CONTROL TREATMENT"
            )
        order = list(shares or {})
        if all(v in order for v in found):
            found.sort(key=order.index)
        return found[0], found[1]
    missing = [v for v in variants if v not in found]
    if missing:
        raise ExposureLogError(f"variants {missing} not in the exposure log; it has {found}")
    return variants[0], variants[1]


def _extras(exposures, complete, per_user, names, spans, ratio, dropped, window) -> ReportExtras:
    anonymous = checks.anonymous_counts(exposures)
    users = {n: per_user.filter(pl.col("variant") == n).height for n in names}
    return ReportExtras(
        title=f"Live A/B: {names[1]} vs {names[0]}",
        context={
            "unit": "users (each user's exposures summed; users are the independent draws)",
            "window": f"{window} s after each exposure",
            "users": ", ".join(f"{n}: {u}" for n, u in users.items()),
            "exposures": f"{complete.height} of identified users used, {dropped} too recent "
            "to judge (window still open)",
            "anonymous exposures": f"{sum(anonymous.values())} without a user id, not in the "
            "comparison (see the table)",
            "sample ratio": ratio.describe(),
            "CIs": "delta method over users; p: z-test on the delta-method variances",
        },
        tables=[_bundle_table(spans, per_user, complete), _anonymous_table(exposures, anonymous)],
        per_user=per_user,
        summary_extra={
            "sample_ratio": asdict(ratio) | {"failed": ratio.failed},
            "anonymous_exposures": anonymous,
        },
    )


def _bundle_table(spans: pl.DataFrame, per_user: pl.DataFrame, complete: pl.DataFrame) -> Table:
    rows = []
    for r in spans.iter_rows(named=True):
        mine = complete.filter(
            (pl.col("variant") == r["variant"]) & pl.col("bundle").eq_missing(r["bundle"])
        )
        rate, _ = ratio_delta(
            *(per_user_sums(mine)[c].to_numpy() for c in LIVE_METRICS["hit_rate"])
        )
        rows.append(
            [
                r["variant"],
                r["bundle"] or "(not logged)",
                checks.when(r["first"]),
                checks.when(r["last"]),
                r["users"],
                r["exposures"],
                "n/a" if not math.isfinite(rate) else f"{rate:.4f}",
            ]
        )
    columns = ["variant", "bundle", "first (UTC)", "last (UTC)", "users", "exposures", "hit rate"]
    note = "Every bundle each compared variant served in the window, anonymous exposures included."
    return Table("Bundles served", columns, rows, note)


def _anonymous_table(exposures: pl.DataFrame, anonymous: dict[str, int]) -> Table:
    totals = dict(exposures.group_by("variant").len().iter_rows())
    rows = [[v, n, f"{n / totals[v]:.1%}"] for v, n in sorted(anonymous.items()) if totals.get(v)]
    note = (
        "Requests without a user id are routed to the control variant and cannot be matched to "
        "what followed, so they are reported here and never enter the user-level comparison."
    )
    columns = ["variant", "exposures without a user id", "share of the variant's exposures"]
    return Table("Anonymous exposures", columns, rows, note)


def _shown_popularity(
    complete: pl.DataFrame, names: tuple[str, str], interactions: pl.DataFrame, k: int
) -> dict[str, np.ndarray]:
    """Interaction count of every top-k item shown, per variant (the popularity plot)."""
    counts = interactions.group_by(pl.col(ITEM_ID).cast(pl.Utf8)).agg(pl.len().alias("_pop"))
    out = {}
    for name in names:
        side = complete.filter(pl.col("variant") == name)
        shown = side.select(pl.col("item_ids").list.head(k).alias(ITEM_ID)).explode(ITEM_ID)
        pop = shown.join(counts, on=ITEM_ID, how="left")["_pop"].fill_null(0)
        out[name] = pop.to_numpy().astype(np.float64)
    return out
