"""The `recsys` command on a damaged work directory (issue 17): every command that reads CURRENT
answers a binary CURRENT with one line and a non-zero exit, `bundles rollback VERSION` repairs
it; rollbacks that change nothing say so; path-like versions are refused."""

import pytest
from support import SAMPLE, run_cli

from recsys import bundle

_cli = run_cli  # `recsys ARGS` in a subprocess (tests/support.py)


def _publish(workdir, version):
    with bundle.staging(workdir, version) as stage:
        (stage / "vectors.npy").write_bytes(version.encode())
        return bundle.publish(stage, workdir, version, {})


@pytest.fixture
def workdir(tmp_path):
    for version in ("A", "B"):
        _publish(tmp_path, version)
        bundle.set_pointer(tmp_path, version, reason="nightly gate")
    return tmp_path


def _one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.slow
def test_every_command_reading_current_answers_a_binary_one_with_one_line(workdir, tmp_path):
    (workdir / "CURRENT").write_bytes(b"\xff\xfe\x00\x80\x81garbage")
    wd = ["--workdir", str(workdir)]
    commands = [
        ["bundles", "list", *wd],
        ["bundles", "verify", *wd],
        ["bundles", "rollback", *wd],
        ["recommend", "--all", "--out", str(tmp_path / "out.csv"), *wd],
        ["serve", *wd],
        ["nightly", "--data", str(SAMPLE), "--no-tracking", *wd],
        ["train-encoder", "--data", str(SAMPLE), "--no-tracking", *wd],
        ["evaluate", "--a", "CURRENT", "--b", "A", "--data", str(SAMPLE), "--out", "x", *wd],
    ]
    for command in commands:
        line = _one_line_error(_cli(*command))
        assert "CURRENT" in line and "expected one bundle version" in line, (command, line)
    listing = _cli("bundles", "list", *wd)
    assert "A " in listing.stdout and "B " in listing.stdout  # what a repair needs, still listed
    repaired = _cli("bundles", "rollback", "A", *wd)
    assert repaired.returncode == 0 and repaired.stdout.strip() == "CURRENT -> A"
    assert bundle.read_pointer(workdir) == "A"
    assert _cli("bundles", "verify", *wd).returncode == 0


def test_rollbacks_that_change_nothing_exit_non_zero_and_say_why(workdir):
    wd = ["--workdir", str(workdir)]
    line = _one_line_error(_cli("bundles", "rollback", "B", *wd))
    assert "CURRENT already names B; nothing rolled back" in line
    assert _cli("bundles", "rollback", *wd).stdout.strip() == "CURRENT -> A"
    line = _one_line_error(_cli("bundles", "rollback", *wd))
    assert "nothing to roll back to" in line
    assert bundle.read_pointer(workdir) == "A"


@pytest.mark.parametrize("version", ["../../other/bundles/V", "/tmp/other/bundles/V"])
def test_path_like_versions_are_refused(workdir, tmp_path_factory, version):
    other = tmp_path_factory.mktemp("other")
    _publish(other, "V")
    for command in (["bundles", "rollback", version], ["bundles", "verify", version]):
        line = _one_line_error(_cli(*command, "--workdir", str(workdir)))
        assert "expected a bundle version" in line
    assert bundle.read_pointer(workdir) == "B"


@pytest.mark.slow
def test_a_rollback_the_registry_cannot_follow_still_stands_and_says_why(workdir, monkeypatch):
    """No MLflow store: a note. A store without the bundle (published untracked): a warning. The
    rollback is done either way (exit 0): a retried one would go back one champion further."""
    from recsys import tracking

    monkeypatch.delenv("RECSYS_MLFLOW_DIR")  # the default store, <workdir>/mlflow: absent
    wd = ["--workdir", str(workdir)]
    done = _cli("bundles", "rollback", *wd)
    assert (done.returncode, done.stdout.strip()) == (0, "CURRENT -> A")
    assert done.stderr.strip() == (
        f"MLflow alias not moved: no MLflow store at {workdir / 'mlflow' / 'mlflow.db'} "
        "(nothing registered from this work directory)"
    )
    tracking.client(workdir)  # a store exists now, but the nightly never registered B or A
    done = _cli("bundles", "rollback", "B", "--reason", "test", *wd)
    assert (done.returncode, done.stdout.strip()) == (0, "CURRENT -> B")
    name = tracking.registered_model_name(workdir)
    assert done.stderr.startswith(f"warning: CURRENT names B but the MLflow alias {name}@champion")
    assert "LookupError: bundle B has no version in registered model" in done.stderr
    quiet = _cli("bundles", "rollback", "A", "--no-tracking", *wd)
    assert (quiet.returncode, quiet.stdout.strip(), quiet.stderr) == (0, "CURRENT -> A", "")
