"""The `recsys` command's options: every command that reports has --json (one document on
stdout that json.loads reads); options a command would accept and ignore are usage errors."""

import json

import pytest
from support import run_cli

from recsys import bundle
from recsys.jobs.cli import build_parser

# Options that did nothing on these commands (issue 14): now refused, exit 2 (usage).
REMOVED = [
    ["recommend", "--all", "--out", "x.csv", "--config", "c.toml"],  # a bundle has its config
    ["bundles", "list", "--config", "c.toml"],
    ["bundles", "verify", "--config", "c.toml"],
    ["bundles", "list", "-q"],
    ["data", "validate", "--data", "d", "--workdir", "w"],  # reads no state
    ["data", "stats", "--data", "d", "-q"],  # logs nothing to quieten
    ["serve", "-q"],  # gunicorn's logging is its own
]
# Every command that reports: --json parses.
REPORTING = [
    ["nightly", "--data", "d"],
    ["evaluate", "--a", "A", "--b", "B", "--data", "d", "--out", "o"],
    ["ab-report", "--exposures", "e", "--interactions", "i", "--out", "o"],
    ["recommend", "--all", "--out", "x.csv"],
    ["bundles", "list"],
    ["bundles", "verify"],
    ["bundles", "rollback"],
    ["data", "stats", "--data", "d"],
    ["config", "show"],
    ["gc"],
]


_cli = run_cli  # `recsys ARGS` in a subprocess (tests/support.py)


@pytest.mark.parametrize("argv", REMOVED, ids=lambda argv: " ".join(argv[:3]))
def test_options_a_command_would_ignore_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser(argv[0]).parse_args(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("argv", REPORTING, ids=lambda argv: " ".join(argv[:2]))
def test_every_reporting_command_takes_json(argv):
    assert build_parser(argv[0]).parse_args([*argv, "--json"]).json is True


def _publish(workdir, version):
    with bundle.staging(workdir, version) as stage:
        (stage / "vectors.npy").write_bytes(version.encode())
        bundle.publish(stage, workdir, version, {"metrics": {"ndcg": 0.25}})
    bundle.set_pointer(workdir, version, reason="nightly gate")


def test_bundles_json_parses_and_errors_keep_their_exit_code(tmp_path):
    for version in ("A", "B"):
        _publish(tmp_path, version)
    wd = ["--workdir", str(tmp_path)]
    listing = json.loads(_cli("bundles", "list", "--json", *wd).stdout)
    assert [(m["version"], m["role"]) for m in listing] == [("A", None), ("B", "CURRENT")]
    checked = _cli("bundles", "verify", "--json", *wd)
    assert json.loads(checked.stdout) == {
        "version": "B",
        "path": str(tmp_path / "bundles" / "B"),
        "ok": True,
        "files": 1,
    }
    back = _cli("bundles", "rollback", "--json", "--no-tracking", *wd)
    assert json.loads(back.stdout) == {"current": "A", "previous": "B", "alias": None}
    assert back.stderr == ""
    untracked = _cli("bundles", "rollback", "B", "--json", *wd)  # no MLflow store: a note
    result = json.loads(untracked.stdout)
    assert result["current"] == "B" and result["alias"]["moved"] is False
    assert "no MLflow store" in result["alias"]["note"]
    (tmp_path / "bundles" / "B" / "vectors.npy").write_bytes(b"tampered")
    broken = _cli("bundles", "verify", "--json", *wd)
    assert broken.returncode == 1 and broken.stdout == ""
    assert broken.stderr.startswith("error: ") and "sha256 mismatch" in broken.stderr
    refused = _cli("bundles", "rollback", "B", "--json", "--no-tracking", *wd)
    assert refused.returncode == 1 and refused.stdout == ""  # CURRENT already names B
