"""Evaluation stage: the live A/B report. Reads the API's exposure log (JSON lines) and the
interactions that followed; writes per-variant hit rate and CTR at k with CIs, the test between
variants and a verdict, as a Comparison rendered by recsys.evaluation.report.

An exposure is a hit when the user interacted with one of its top-k items within
[time, time + window]. Exposures whose window reaches past the end of the interaction data are
left out (their outcome is not known yet). Per-variant CIs and the CI of the difference are
bootstraps over users (a user's exposures move together); the p-value is the two-proportion z-test
over exposures (hit rate) or over shown slots (CTR), which treats them as independent.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.config import EvalConfig
from recsys.data.timestamps import parse_timestamps
from recsys.errors import UserError
from recsys.evaluation.compare import ALL_USERS, Cell, Comparison, Verdict, adjust, verdict
from recsys.evaluation.compare import relative_lift as _lift
from recsys.evaluation.report import ReportExtras
from recsys.evaluation.stats import bootstrap_means, percentile_ci, two_proportion_ztest
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID

REQUIRED_KEYS = ("time", "user_id", "variant", "item_ids")
LIVE_METRICS = ("hit_rate", "ctr")  # primary first
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ExposureLogError(UserError, ValueError):
    """An exposure log that cannot be read; the message names the file and the lines."""


@dataclass
class LiveABResult:
    comparison: Comparison
    verdict: Verdict
    extras: ReportExtras


def parse_window(text: str) -> int:
    """'7d' -> 604800 seconds; units s, m, h, d, w (none: seconds)."""
    match = _WINDOW.match(str(text))
    if not match:
        raise ValueError(f"window: expected a duration like 30m, 12h, 7d or 2w, found {text!r}")
    return int(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def read_exposures(path: str | Path) -> pl.DataFrame:
    """The exposure log as a frame: time (Int64 epoch s), user_id, variant, bundle (Utf8),
    item_ids (List[Utf8], in display order: sorted by `positions` when given), line (Int64)."""
    path = Path(path)
    rows, errors, raw_times = [], [], []
    with path.open(encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                rows.append(_parse_line(text, line_no))
                raw_times.append(rows[-1]["time"])
            except ValueError as exc:
                errors.append(f"line {line_no}: {exc}")
    if errors:
        shown = "\n  ".join(errors[:5])
        raise ExposureLogError(
            f"{path}: {len(errors)} bad exposure line(s), first ones:\n  {shown}"
        )
    if not rows:
        raise ExposureLogError(f"{path}: no exposures; expected JSON lines with {REQUIRED_KEYS}")
    times = parse_timestamps(pl.Series("time", [str(t) for t in raw_times], dtype=pl.Utf8))
    if times.null_count():
        bad = [
            f"line {r['line']}: {r['time']!r}"
            for r, t in zip(rows, times, strict=True)
            if t is None
        ]
        raise ExposureLogError(
            f"{path}: time must be epoch seconds or ISO-8601, found:\n  " + "\n  ".join(bad[:5])
        )
    frame = pl.DataFrame(rows, schema=_SCHEMA).with_columns(times.alias("time"))
    return frame


_SCHEMA = {
    "time": pl.Utf8,
    "user_id": pl.Utf8,
    "variant": pl.Utf8,
    "bundle": pl.Utf8,
    "item_ids": pl.List(pl.Utf8),
    "line": pl.Int64,
}


def _parse_line(text: str, line_no: int) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, found {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"missing key(s) {missing}; expected {list(REQUIRED_KEYS)}")
    items = record["item_ids"]
    if not isinstance(items, list) or any(isinstance(i, dict | list) for i in items):
        raise ValueError(f"item_ids: expected a list of ids, found {str(items)[:60]}")
    positions = record.get("positions")
    if positions is not None:
        if not isinstance(positions, list) or len(positions) != len(items):
            raise ValueError(f"positions: expected {len(items)} numbers like item_ids")
        items = [item for _, item in sorted(zip(positions, items, strict=True), key=lambda p: p[0])]
    time = record["time"]
    if isinstance(time, bool) or not isinstance(time, str | int | float):
        raise ValueError(f"time: expected epoch seconds or an ISO-8601 string, found {time!r}")
    return {
        "time": str(time),
        "user_id": str(record["user_id"]),
        "variant": str(record["variant"]),
        "bundle": None if record.get("bundle") is None else str(record["bundle"]),
        "item_ids": [str(i) for i in items],
        "line": line_no,
    }


def outcomes(
    exposures: pl.DataFrame, interactions: pl.DataFrame, window_seconds: int, k: int
) -> pl.DataFrame:
    """Per exposure: slots (distinct top-k items shown) and engaged (those interacted with in
    [time, time + window]). Keeps the exposure columns."""
    _check_columns(interactions, (USER_ID, ITEM_ID, TIMESTAMP), "interactions")
    inter = interactions.select(
        pl.col(USER_ID).cast(pl.Utf8),
        pl.col(ITEM_ID).cast(pl.Utf8),
        parse_timestamps(interactions[TIMESTAMP]).alias("_ts"),
    )
    _check_columns(exposures, REQUIRED_KEYS, "exposures")
    exp = exposures.with_columns(
        parse_timestamps(exposures["time"]).alias("time"),
        pl.col("user_id", "variant").cast(pl.Utf8),
        pl.col("item_ids").cast(pl.List(pl.Utf8)),
    ).with_row_index("_exposure")
    shown = (
        exp.select("_exposure", "user_id", "time", pl.col("item_ids").list.head(k).alias(ITEM_ID))
        .explode(ITEM_ID)
        .drop_nulls(ITEM_ID)
        .unique(["_exposure", ITEM_ID])
    )
    engaged = (
        shown.join(inter, on=[USER_ID, ITEM_ID], how="inner")
        .filter(
            (pl.col("_ts") >= pl.col("time")) & (pl.col("_ts") <= pl.col("time") + window_seconds)
        )
        .group_by("_exposure")
        .agg(pl.col(ITEM_ID).n_unique().alias("engaged"))
    )
    slots = shown.group_by("_exposure").agg(pl.len().alias("slots"))
    return (
        exp.join(slots, on="_exposure", how="left")
        .join(engaged, on="_exposure", how="left")
        .with_columns(pl.col("slots").fill_null(0), pl.col("engaged").fill_null(0))
        .sort("_exposure")
        .drop("_exposure")
    )


def live_ab_report(
    exposures: pl.DataFrame,
    interactions: pl.DataFrame,
    window_seconds: int,
    k: int,
    config: EvalConfig | None = None,
    variants: tuple[str, str] | None = None,
    observed_until: int | None = None,
) -> LiveABResult:
    """Compare two variants of the live traffic on hit rate@k (primary) and CTR@k.

    variants: (control, treatment); default the two variant names in the log, sorted.
    observed_until: epoch s up to which interactions are complete; default their latest time.
    """
    config = (config or EvalConfig()).model_copy(update={"k": k, "primary_metric": "hit_rate"})
    name_a, name_b = _pick_variants(exposures, variants)
    frame = outcomes(exposures, interactions, window_seconds, k)
    if observed_until is None:
        observed_until = int(parse_timestamps(interactions[TIMESTAMP]).max() or 0)
    sides, dropped = _complete(frame, (name_a, name_b), window_seconds, observed_until)
    comparison = Comparison(
        name_a=name_a,
        name_b=name_b,
        k=k,
        test="ztest",
        correction=config.correction,
        alpha=config.alpha,
        n_bootstrap=config.bootstrap,
        seed=config.seed,
        unit="exposures",
    )
    comparison.cells = [_live_cell(m, sides[0], sides[1], config) for m in LIVE_METRICS]
    adjust(comparison)
    extras = ReportExtras(
        title=f"Live A/B: {name_b} vs {name_a}",
        context={
            "window": f"{window_seconds} s after each exposure",
            "exposures": f"{sides[0].height + sides[1].height} used, "
            f"{dropped} too recent to judge (window still open)",
            "users": f"{name_a}: {sides[0]['user_id'].n_unique()}, "
            f"{name_b}: {sides[1]['user_id'].n_unique()}",
            "CIs": "bootstrap over users; p-value: two-proportion z-test",
        },
        recommended_popularity=_shown_popularity(sides, interactions, k),
    )
    return LiveABResult(comparison, verdict(comparison, config), extras)


def _complete(
    frame: pl.DataFrame, names: tuple[str, str], window_seconds: int, until: int
) -> tuple[list[pl.DataFrame], int]:
    """Each variant's exposures whose window closed by `until`, and how many were left out."""
    complete = frame.filter(pl.col("time") + window_seconds <= until)
    dropped = frame.height - complete.height
    sides = [complete.filter(pl.col("variant") == name) for name in names]
    for name, side in zip(names, sides, strict=True):
        if side.height == 0:
            raise ValueError(
                f"variant {name!r}: no exposure with a complete {window_seconds} s window before "
                f"{until} (the end of the interactions); {dropped} exposure(s) left out as "
                "too recent"
            )
    return sides, dropped


def _pick_variants(exposures: pl.DataFrame, variants: tuple[str, str] | None) -> tuple[str, str]:
    found = sorted(exposures["variant"].unique().to_list())
    if variants is None:
        if len(found) != 2:
            raise ValueError(f"exposure log: expected 2 variants to compare, found {found}")
        return found[0], found[1]
    missing = [v for v in variants if v not in found]
    if missing:
        raise ValueError(f"variants {missing} not in the exposure log; it has {found}")
    return variants[0], variants[1]


def _live_cell(metric: str, a: pl.DataFrame, b: pl.DataFrame, config: EvalConfig) -> Cell:
    """One metric as a ratio of sums: hit_rate = hits / exposures, ctr = engaged / slots."""
    num, den = ("_hit", "_one") if metric == "hit_rate" else ("engaged", "slots")
    totals, boots = [], []
    for seed_offset, side in enumerate((a, b)):
        per_user = (
            side.with_columns((pl.col("engaged") > 0).cast(pl.Float64).alias("_hit"), _one=1.0)
            .group_by("user_id")
            .agg(pl.col(num).sum().cast(pl.Float64), pl.col(den).sum().cast(pl.Float64))
        )
        sums = per_user.select(num, den).to_numpy()  # (n_users, 2)
        totals.append((float(sums[:, 0].sum()), float(sums[:, 1].sum())))
        means = bootstrap_means(sums, config.bootstrap, config.seed + seed_offset)  # (B, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            boots.append(means[:, 0] / means[:, 1])  # (B,) ratio of means = ratio of sums
    (hits_a, n_a), (hits_b, n_b) = totals
    rate_a = hits_a / n_a if n_a else math.nan
    rate_b = hits_b / n_b if n_b else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        lift_boot = boots[1] / boots[0] - 1.0
    ci = [percentile_ci(x, config.alpha) for x in (*boots, boots[1] - boots[0], lift_boot)]
    p = two_proportion_ztest(int(hits_a), int(n_a), int(hits_b), int(n_b))
    return Cell(
        metric=metric,
        segment=ALL_USERS,
        n_users=int(a.height + b.height),
        mean_a=rate_a,
        ci_a=(float(ci[0][0][0]), float(ci[0][1][0])),
        mean_b=rate_b,
        ci_b=(float(ci[1][0][0]), float(ci[1][1][0])),
        diff=rate_b - rate_a,
        diff_ci=(float(ci[2][0][0]), float(ci[2][1][0])),
        lift=_lift(rate_a, rate_b),
        lift_ci=(float(ci[3][0][0]), float(ci[3][1][0])),
        p_values={"ztest": p},
        p_value=p,
    )


def _shown_popularity(
    sides: list[pl.DataFrame], interactions: pl.DataFrame, k: int
) -> dict[str, np.ndarray]:
    """Interaction count of every top-k item shown, per variant (the popularity plot)."""
    counts = interactions.group_by(pl.col(ITEM_ID).cast(pl.Utf8)).agg(pl.len().alias("_pop"))
    out = {}
    for side in sides:
        shown = side.select(pl.col("item_ids").list.head(k).alias(ITEM_ID)).explode(ITEM_ID)
        pop = shown.join(counts, on=ITEM_ID, how="left")["_pop"].fill_null(0)
        out[str(side["variant"][0])] = pop.to_numpy().astype(np.float64)
    return out


def _check_columns(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; found {frame.columns}")
