"""Live A/B report: reading the exposure log, outcomes within the window, and the comparison."""

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from recsys.config import EvalConfig
from recsys.evaluation.exposures import (
    ExposureLogError,
    live_ab_report,
    outcomes,
    parse_window,
    read_exposures,
)
from recsys.evaluation.report import render_html

T0 = 1_700_000_000
HOUR = 3600
FAST = EvalConfig(bootstrap=200)


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_read_exposures_parses_times_and_orders_by_position(tmp_path):
    iso = datetime.fromtimestamp(T0 + 60, UTC).isoformat().replace("+00:00", "Z")
    log = _write(
        tmp_path / "exposures.jsonl",
        [
            {"time": T0, "user_id": 7, "variant": "a", "bundle": "v1", "item_ids": ["x", "y"]},
            {
                "time": iso,
                "user_id": "u2",
                "variant": "b",
                "item_ids": ["p", "q", "r"],
                "scores": [0.1, 0.9, 0.5],
                "positions": [3, 1, 2],
            },
        ],
    )
    frame = read_exposures(log)
    assert frame["time"].to_list() == [T0, T0 + 60]
    assert frame["user_id"].to_list() == ["7", "u2"]
    assert frame["item_ids"].to_list() == [["x", "y"], ["q", "r", "p"]]
    assert frame["bundle"].to_list() == ["v1", None]


def test_read_exposures_names_the_bad_lines(tmp_path):
    good = {"time": T0, "user_id": "u", "variant": "a", "item_ids": ["x"]}
    log = _write(
        tmp_path / "bad.jsonl",
        [good, {**good, "variant": None} | {"item_ids": "x"}, {"user_id": "u"}, good],
    )
    with pytest.raises(ExposureLogError, match="2 bad exposure line") as err:
        read_exposures(log)
    assert "line 2: item_ids: expected a list" in str(err.value)
    assert "line 3: missing key(s) ['time', 'variant', 'item_ids']" in str(err.value)
    (tmp_path / "t.jsonl").write_text(json.dumps({**good, "time": "yesterday"}) + "\nnot json\n")
    with pytest.raises(ExposureLogError, match="line 2: not JSON"):
        read_exposures(tmp_path / "t.jsonl")
    _write(tmp_path / "t2.jsonl", [{**good, "time": "yesterday"}])
    with pytest.raises(ExposureLogError, match="line 1: 'yesterday'"):
        read_exposures(tmp_path / "t2.jsonl")


def test_parse_window():
    assert parse_window("7d") == 7 * 86400
    assert parse_window("90m") == 5400 and parse_window("3600") == 3600
    with pytest.raises(ValueError, match="like 30m, 12h, 7d"):
        parse_window("a week")


def test_outcomes_count_only_top_k_items_inside_the_window():
    exposures = pl.DataFrame(
        {"time": [T0], "user_id": ["u"], "variant": ["a"], "item_ids": [["x", "y", "z"]]}
    )
    interactions = pl.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "item_id": ["x", "y", "x", "z", "y"],
            "timestamp": [T0 - 1, T0 + HOUR, T0 + 2 * HOUR + 1, T0 + 10, T0 + 5],
        }
    )
    # x: before the exposure and after the window; y: inside; z: inside but beyond k = 2;
    # the other user's click on y does not count
    row = outcomes(exposures, interactions, window_seconds=2 * HOUR, k=2).row(0, named=True)
    assert (row["slots"], row["engaged"]) == (2, 1)
    row = outcomes(exposures, interactions, window_seconds=2 * HOUR, k=3).row(0, named=True)
    assert (row["slots"], row["engaged"]) == (3, 2)
    with pytest.raises(ValueError, match="interactions: missing column\\(s\\) \\['timestamp'\\]"):
        outcomes(exposures, interactions.drop("timestamp"), 60, 2)


def _traffic(click_a: float, click_b: float, n_users: int = 400, seed: int = 0):
    """Users alternate between variants; each exposure is clicked (one of its 10 items, within
    the hour) with the variant's probability."""
    rng = np.random.default_rng(seed)
    exposures, clicks = [], []
    for u in range(n_users):
        variant, p = ("control", click_a) if u % 2 == 0 else ("treatment", click_b)
        for e in range(5):
            t = T0 + e * 6 * HOUR + u
            items = [f"i{x}" for x in rng.choice(500, 10, replace=False)]
            exposures.append((t, f"u{u}", variant, items))
            if rng.random() < p:
                clicks.append((f"u{u}", items[rng.integers(10)], t + int(rng.integers(HOUR))))
    clicks.append(("late", "i0", T0 + 100 * HOUR))  # interactions are complete until here
    frame = pl.DataFrame(exposures, schema=["time", "user_id", "variant", "item_ids"], orient="row")
    inter = pl.DataFrame(clicks, schema=["user_id", "item_id", "timestamp"], orient="row")
    return frame, inter


def test_clicked_more_often_variant_wins(tmp_path):
    exposures, interactions = _traffic(click_a=0.15, click_b=0.30)
    result = live_ab_report(exposures, interactions, window_seconds=HOUR, k=10, config=FAST)
    hit = result.comparison.cell("hit_rate")
    assert hit.n_users == 2000  # exposures
    assert hit.ci_a[0] <= 0.15 <= hit.ci_a[1] and hit.ci_b[0] <= 0.30 <= hit.ci_b[1]
    assert hit.diff_ci[0] > 0 and hit.significant
    assert result.comparison.cell("ctr").mean_b == pytest.approx(hit.mean_b / 10)
    assert result.verdict.decision == "promote" and "treatment" in result.verdict.reasons[0]
    path = render_html(result.comparison, result.verdict, result.extras, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["comparison"]["unit"] == "exposures"
    assert path.read_text().count("data:image/png;base64,") == 3  # no per-user differences


def test_equal_traffic_is_inconclusive():
    exposures, interactions = _traffic(click_a=0.2, click_b=0.2)
    treated = exposures.filter(pl.col("variant") == "control").with_columns(
        variant=pl.lit("treatment"), user_id=pl.col("user_id") + "_t"
    )  # the same users and clicks again under the other name: no difference at all
    clicks_t = interactions.with_columns(user_id=pl.col("user_id") + "_t")
    both = pl.concat([exposures.filter(pl.col("variant") == "control"), treated])
    result = live_ab_report(both, pl.concat([interactions, clicks_t]), HOUR, 10, config=FAST)
    hit = result.comparison.cell("hit_rate")
    assert hit.diff == 0.0 and hit.p_value == 1.0
    assert result.verdict.decision == "inconclusive"


def test_recent_exposures_are_left_out_and_variants_are_checked():
    exposures, interactions = _traffic(click_a=0.2, click_b=0.3, n_users=40)
    # exposure e of user u is at T0 + 6e h + u s; with a 1 h window it is complete when it ends
    # by 13 h: all 40 users at 0 h and 6 h, only u0 at 12 h
    until = T0 + 13 * HOUR
    result = live_ab_report(exposures, interactions, HOUR, 10, FAST, observed_until=until)
    assert result.comparison.cell("hit_rate").n_users == 81
    assert "119 too recent" in result.extras.context["exposures"]
    with pytest.raises(ValueError, match="no exposure with a complete"):
        live_ab_report(exposures, interactions, HOUR, 10, FAST, observed_until=T0)
    with pytest.raises(ValueError, match="variants \\['x'\\] not in the exposure log"):
        live_ab_report(exposures, interactions, HOUR, 10, FAST, variants=("control", "x"))
    three = pl.concat([exposures, exposures.head(1).with_columns(variant=pl.lit("c"))])
    with pytest.raises(ValueError, match="expected 2 variants"):
        live_ab_report(three, interactions, HOUR, 10, FAST)
