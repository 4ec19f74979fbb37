"""`recsys ab-report` as a user runs it: several per-process logs, shares from the config or the
command line, a time range, and clear errors for bad input."""

import json

import polars as pl
import pytest
from live_traffic import DAY, T0, traffic
from support import dump_toml

from recsys.config import load_config
from recsys.jobs.cli import main


@pytest.fixture
def logs(tmp_path):
    """Simulated traffic written as the API writes it: one file per worker process."""
    exposures, interactions = traffic(n_users=400, click_a=0.1, click_b=0.3, seed=11)
    folder = tmp_path / "logs"
    folder.mkdir()
    rows = exposures.with_columns(pl.col("time").cast(pl.Float64) + 0.25).to_dicts()
    for pid in (101, 102):
        with (folder / f"exposure.pod-1.{pid}.jsonl").open("w") as handle:
            for row in rows[pid % 2 :: 2]:
                handle.write(json.dumps(row) + "\n")
    interactions.write_csv(tmp_path / "clicks.csv")
    return tmp_path, exposures


def _config(path, variants: dict) -> str:
    path.write_text(dump_toml(load_config(None, {"serving": {"variants": variants}})))
    return str(path)


def _run(tmp_path, *extra: str) -> list[str]:
    return [
        "ab-report",
        *("--exposures", str(tmp_path / "logs" / "exposure.jsonl")),
        *("--interactions", str(tmp_path / "clicks.csv")),
        *("--window", "1d", "--out", str(tmp_path / "out"), "--no-tracking", "-q"),
        *extra,
    ]


def test_reads_every_process_file_with_the_configured_shares(logs, capsys):
    tmp_path, exposures = logs
    config = _config(tmp_path / "c.toml", {"B": 0.5, "A": 0.5})  # B listed first: the control
    assert main(_run(tmp_path, "--config", config)) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: HOLD")  # A (the treatment here) clicks more: B holds
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["comparison"]["name_a"], summary["comparison"]["name_b"]) == ("B", "A")
    assert summary["sample_ratio"]["source"] == "configured shares"
    per_user = pl.read_parquet(tmp_path / "out" / "per_user.parquet")
    assert per_user["exposures"].sum() == exposures.height  # both files, each line once
    assert {"report.html", "summary.json", "per_user.parquet"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }


def test_shares_on_the_command_line_and_a_time_range(logs, capsys):
    tmp_path, exposures = logs
    since = T0 + 2 * DAY
    assert main(_run(tmp_path, "--shares", "A=1", "B=3", "--since", str(since))) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: NO VERDICT — Sample ratio mismatch")  # 50/50 is not 1:3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sample_ratio"]["shares"] == {"A": 0.25, "B": 0.75}
    per_user = pl.read_parquet(tmp_path / "out" / "per_user.parquet")
    assert per_user["exposures"].sum() == exposures.filter(pl.col("time") >= since).height


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--shares", "A=1", "B"), "--shares: expected VARIANT=SHARE with SHARE > 0, found 'B'"),
        (("--shares", "A=1", "B=-2"), "found 'B=-2'"),
        (("--since", "yesterday"), "--since: expected ISO-8601 or epoch seconds"),
        (("--until", str(T0 - 1)), "no exposure between"),
        (("--shares", "A=1", "C=1"), "variant(s) ['B'] are not among the configured"),
        (("--variants", "A", "Z"), "variants ['Z'] not in the exposure log"),
    ],
)
def test_bad_input_is_a_clear_error(logs, capsys, extra, message):
    tmp_path, _ = logs
    assert main(_run(tmp_path, *extra)) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_missing_log_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "clicks.csv").write_text("user_id,item_id,timestamp\nu,i,1\n")
    assert main(_run(tmp_path)) == 1
    assert "no exposure log found" in capsys.readouterr().err
