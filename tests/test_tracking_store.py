"""MLflow store edges (issue 17): with a user-supplied sqlite URI, artifacts go beside the database,
not into ./mlruns of whatever directory a job started from; two jobs making first use of a fresh
store at once both succeed (MLflow migrates a new store without a lock of its own)."""

import os
import subprocess
import sys

import pytest

import mlflow
from recsys import tracking


def test_artifacts_of_a_user_sqlite_store_go_beside_it(tmp_path, monkeypatch):
    store = tmp_path / "team" / "store.db"
    elsewhere = tmp_path / "started-here"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"version": "v1"}')
    with tracking.start_run("exp", "publish") as run:
        run.log_artifact(manifest, "bundle")
        tracking.register_bundle(run, "recsys-test", "v1", tmp_path / "v1", "champion")
    assert list(elsewhere.iterdir()) == []  # no ./mlruns (nor anything else) where it started
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    location = client.get_experiment_by_name("exp").artifact_location
    assert location == (store.parent / "artifacts").as_uri()
    logged = list((store.parent / "artifacts").rglob("manifest.json"))
    assert len(logged) == 1 and logged[0].read_text() == '{"version": "v1"}'
    assert tracking.bundle_for_alias("recsys-test", "champion")[0] == "v1"


def test_relative_sqlite_paths_and_other_stores():
    assert str(tracking.sqlite_path("sqlite:///rel/x.db")) == os.path.abspath("rel/x.db")
    assert tracking.sqlite_path("sqlite:////abs/x.db").as_posix() == "/abs/x.db"
    assert tracking.sqlite_path("sqlite://") is None
    assert tracking.sqlite_path("sqlite:///:memory:") is None
    assert tracking.artifact_root("http://mlflow.example:5000") is None


RACE = """
import sys, time
from pathlib import Path
from recsys import tracking
barrier, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(barrier / me).touch()  # imports done: wait for the others, then all at once
while len(list(barrier.iterdir())) < n:
    time.sleep(0.001)
with tracking.start_run("recsys-nightly", "nightly") as run:
    run.log_params({"seed": 1})
print("ok")
"""


@pytest.mark.slow
def test_first_use_of_a_fresh_store_by_concurrent_jobs(tmp_path):
    """Three jobs: without the lock, this crashed at least one of them in every try here."""
    store, barrier, n = tmp_path / "fresh.db", tmp_path / "barrier", 3
    barrier.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(barrier), str(i), str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = [job.communicate(timeout=300) for job in jobs]
    for job, (out, err) in zip(jobs, results, strict=True):
        assert job.returncode == 0 and out.strip() == "ok", err[-2000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("recsys-nightly")
    assert len(client.search_runs([experiment.experiment_id])) == n
