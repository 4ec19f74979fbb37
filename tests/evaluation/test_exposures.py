"""Exposure logs: reading one or many files (one per API process), and outcomes in the window."""

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from recsys.evaluation.exposures import (
    ExposureLogError,
    exposure_files,
    outcomes,
    parse_window,
    read_exposures,
)

T0 = 1_700_000_000
HOUR = 3600


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


def test_anonymous_exposures_keep_a_null_user_id(tmp_path):
    """Not the string "None": an anonymous exposure must never pass for a user."""
    good = {"time": T0, "variant": "a", "item_ids": ["x"]}
    log = _write(
        tmp_path / "e.jsonl",
        [{**good, "user_id": None}, {**good, "user_id": "None"}, {**good, "user_id": ""}],
    )
    assert read_exposures(log)["user_id"].to_list() == [None, "None", None]
    _write(tmp_path / "bad.jsonl", [{**good, "user_id": {"id": 1}}])
    with pytest.raises(ExposureLogError, match="user_id: expected a string, a number or null"):
        read_exposures(tmp_path / "bad.jsonl")


def test_several_files_one_per_process(tmp_path):
    """The API writes exposure.<host>.<pid>.jsonl per process; a glob, the directory, or the
    configured path itself reads them all, each exposure once, in time order."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for pid, times in ((11, [T0 + 5, T0 + 1]), (12, [T0 + 3])):
        _write(
            logs / f"exposure.pod-a.{pid}.jsonl",
            [{"time": t, "user_id": f"p{pid}", "variant": "a", "item_ids": ["x"]} for t in times],
        )
    (logs / "notes.txt").write_text("not a log")
    frame = read_exposures(str(logs / "exposure.*.jsonl"))
    assert frame["time"].to_list() == [T0 + 1, T0 + 3, T0 + 5]
    assert frame["file"].str.ends_with("exposure.pod-a.11.jsonl").to_list() == [True, False, True]
    assert frame["line"].to_list() == [2, 1, 1]
    configured = logs / "exposure.jsonl"  # [serving] exposure_log: stands for its siblings
    assert exposure_files(configured) == exposure_files(str(logs / "exposure.*.jsonl"))
    assert exposure_files(logs) == exposure_files(configured)
    both = [str(logs / "exposure.pod-a.11.jsonl"), str(logs / "exposure.*.jsonl")]
    assert read_exposures(both).height == 3  # a file named twice is read once
    with pytest.raises(ExposureLogError, match="no exposure log found"):
        read_exposures(str(tmp_path / "nothing.*.jsonl"))
    with pytest.raises(ExposureLogError, match="no exposure log found"):
        read_exposures(tmp_path / "missing.jsonl")
    _write(logs / "exposure.pod-b.1.jsonl", [{"time": T0, "user_id": "u"}])
    with pytest.raises(ExposureLogError, match="exposure.pod-b.1.jsonl: 1 bad exposure line"):
        read_exposures(configured)
