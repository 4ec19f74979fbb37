"""Tracking: a run logged to a temp sqlite store is read back through the MLflow client."""

import mlflow
from recsys import tracking


def test_run_round_trip_sqlite(tmp_path):
    with tracking.start_run("exp", "parent", tags={"config_hash": "abc"}) as parent:
        parent.log_params({"collab": {"factors": 8}, "seed": 1})
        parent.log_metrics({"ndcg": 0.25}, step=2)
        artifact = tmp_path / "report.json"
        artifact.write_text("{}")
        parent.log_artifact(artifact)
        with tracking.start_run("exp", "child", parent=parent) as child:
            child.log_metrics({"loss": 1.5})
    assert tracking.tracking_uri().startswith("sqlite:///")
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()  # conftest points the store here
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"collab.factors": "8", "seed": "1"}
    assert run.data.metrics["ndcg"] == 0.25
    assert run.data.tags["config_hash"] == "abc"
    assert [a.path for a in client.list_artifacts(parent.run_id)] == ["report.json"]
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_failed_run_is_marked_failed():
    try:
        with tracking.start_run("exp", "boom") as run:
            raise ValueError("x")
    except ValueError:
        pass
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_null_tracker_records():
    tracker = tracking.NullTracker()
    tracker.log_metrics({"a": 1}, step=0)
    assert tracker.metrics == {"a": [(0, 1.0)]}


def test_register_bundle_and_aliases(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"version": "v1"}')
    with tracking.start_run("exp", "publish") as run:
        run.log_artifact(manifest, "bundle")
        first = tracking.register_bundle(run, "recsys-test", "v1", tmp_path / "v1", "champion")
    with tracking.start_run("exp", "publish") as run:
        run.log_artifact(manifest, "bundle")
        second = tracking.register_bundle(run, "recsys-test", "v2", tmp_path / "v2", "challenger")
    assert (first, second) == ("1", "2")
    assert tracking.bundle_for_alias("recsys-test", "champion") == ("v1", str(tmp_path / "v1"))
    assert tracking.bundle_for_alias("recsys-test", "nope") is None
