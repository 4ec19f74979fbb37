"""The `recsys` command: help lists every command; data validate/stats on good and broken data."""

import shutil

import polars as pl
from support import SAMPLE, run_cli

_cli = run_cli  # `recsys ARGS` in a subprocess (tests/support.py)


def test_help_lists_every_command(capsys):
    import pytest

    from recsys.jobs.cli import COMMANDS, build_parser

    proc = _cli("--help")
    assert proc.returncode == 0
    for name, _, _ in COMMANDS:
        assert name in proc.stdout
        with pytest.raises(SystemExit) as exit_info:  # every command's own --help works
            build_parser(name).parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: recsys {name}" in capsys.readouterr().out


def test_data_validate_and_stats_on_the_sample():
    proc = _cli("data", "validate", "--data", str(SAMPLE))
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")
    stats = _cli("data", "stats", "--data", str(SAMPLE))
    assert stats.returncode == 0
    assert "density" in stats.stdout and "interactions" in stats.stdout


def test_broken_copy_fails_with_file_and_column(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    pl.read_csv(data / "interactions.csv").drop("timestamp").write_csv(data / "interactions.csv")
    proc = _cli("data", "validate", "--data", str(data))
    assert proc.returncode != 0
    assert "interactions.csv" in proc.stderr and "timestamp" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_errors_exit_with_their_code_in_one_line(tmp_path):
    """Every UserError leaves as `error: ...` with its exit code and no traceback: bad data 65
    (EX_DATAERR), a busy work directory 75 (EX_TEMPFAIL), a bad config 1; usage errors stay 2."""
    from recsys.steps import WorkdirLock

    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    pl.read_csv(data / "items.csv").drop("item_id").write_csv(data / "items.csv")
    bad_data = _cli("data", "validate", "--data", str(data))
    work = tmp_path / "work"
    with WorkdirLock(work):  # another run holds the work directory
        busy = _cli("nightly", "--data", str(SAMPLE), "--workdir", str(work), "--no-tracking")
    config = tmp_path / "bad.toml"
    config.write_text("[blend]\nsources = ['text', 'telepathy']\n")
    bad_config = _cli("data", "stats", "--data", str(SAMPLE), "--config", str(config))
    usage = _cli("data", "validate", "--no-such-option")
    for proc, code, words in (
        (bad_data, 65, "item_id"),
        (busy, 75, "another run holds this work directory"),
        (bad_config, 1, "blend.sources.1"),
    ):
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.startswith("error: ") and words in proc.stderr
        assert "Traceback" not in proc.stderr
    assert usage.returncode == 2 and "usage:" in usage.stderr
