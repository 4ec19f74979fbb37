"""Tracking: runs, the registered pyfunc model and its aliases, read back through the MLflow client
(temp sqlite stores); where runs go and the model's name, derived from the work directory."""

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

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


def _bundle_dir(root, version):
    """A stand-in bundle directory: logging copies it whole; these tests never load it (a real
    bundle is served through MLflow in tests/e2e/test_mlflow_model.py)."""
    path = root / "bundles" / version
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(f'{{"version": "{version}"}}')
    return path


def test_bundle_logged_as_pyfunc_model_registered_and_aliases_moved(tmp_path):
    v1, v2 = _bundle_dir(tmp_path, "v1"), _bundle_dir(tmp_path, "v2")
    with tracking.start_run("exp", "nightly") as run1:
        first = tracking.log_bundle_model(run1, "recsys-test", "v1", v1, "champion", "gate: v1")
    with tracking.start_run("exp", "nightly") as run2:
        second = tracking.log_bundle_model(run2, "recsys-test", "v2", v2, "challenger", "held")
    assert (first, second) == ("1", "2")
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
    assert client.get_run(run1.run_id).info.status == "FINISHED"
    champion = client.get_model_version_by_alias("recsys-test", "champion")
    assert str(champion.version) == "1" and champion.run_id == run1.run_id
    assert champion.source.startswith("models:/")  # a logged model, not a run's manifest
    assert champion.tags["champion_reason"] == "gate: v1" and champion.tags["champion_since"]
    assert champion.tags["bundle_version"] == "v1" and champion.tags["bundle_path"] == str(v1)
    model_id = champion.source.removeprefix("models:/")
    logged = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    flavor = yaml.safe_load((logged / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # Models from Code
    assert (logged / "mlflow_pyfunc.py").read_text() == tracking.MODEL_CODE.read_text()
    assert (logged / flavor["artifacts"]["bundle"]["path"] / "manifest.json").is_file()
    assert not [p for p in logged.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert tracking.bundle_for_alias("recsys-test", "champion") == ("v1", str(v1))
    assert tracking.bundle_for_alias("recsys-test", "challenger")[0] == "v2"

    assert tracking.set_alias("recsys-test", "champion", "v2", "rollback: test") == "2"
    assert tracking.bundle_for_alias("recsys-test", "champion")[0] == "v2"
    assert client.get_model_version("recsys-test", "2").tags["champion_reason"] == "rollback: test"
    with pytest.raises(LookupError, match="v9 has no version in registered model"):
        tracking.set_alias("recsys-test", "champion", "v9", "nope")
    assert tracking.bundle_for_alias("recsys-test", "nope") is None


def test_model_name_and_store_derive_from_the_work_directory(tmp_path, monkeypatch):
    a, b = tmp_path / "one" / "var", tmp_path / "two" / "var"  # same base name
    name_a, name_b = tracking.registered_model_name(a), tracking.registered_model_name(b)
    assert name_a != name_b and name_a.startswith("recsys-var-") and len(name_a) == 19
    assert tracking.registered_model_name(a) == name_a  # stable
    assert tracking.registered_model_name(tmp_path / "x y:z").startswith("recsys-x-y-z-")
    assert tracking.registered_model_name(a, "team-model") == "team-model"  # [nightly] wins
    monkeypatch.delenv("RECSYS_MLFLOW_DIR")
    assert tracking.tracking_uri(a) == f"sqlite:///{a / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("RECSYS_MLFLOW_DIR", str(tmp_path / "shared"))
    assert tracking.tracking_uri(a) == f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri(a) == "http://mlflow.example:5000"


def test_two_work_directories_in_one_store_keep_their_own_aliases(tmp_path, monkeypatch):
    """A shared store (one MLFLOW_TRACKING_URI): each work directory registers under its own
    name, so neither moves the other's champion. Separate default stores: tests/e2e."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    names = {}
    for work in (tmp_path / "a", tmp_path / "b"):
        names[work.name] = tracking.registered_model_name(work)
        for version in ("v1", "v2"):
            path = _bundle_dir(work, f"{work.name}-{version}")
            with tracking.start_run("recsys-nightly", "nightly", workdir=work) as run:
                tracking.log_bundle_model(
                    run, names[work.name], path.name, path, "champion", "gate"
                )
    tracking.set_alias(names["a"], "champion", "a-v1", "rollback", tmp_path / "a")
    assert tracking.bundle_for_alias(names["a"], "champion")[0] == "a-v1"
    assert tracking.bundle_for_alias(names["b"], "champion")[0] == "b-v2"
    with pytest.raises(LookupError):  # b's bundles are not in a's registered model
        tracking.set_alias(names["a"], "champion", "b-v1", "rollback", tmp_path / "a")
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'shared.db'}"


def test_registry_off_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_MLFLOW_DIR")
    assert "no MLflow store at" in tracking.registry_off(tmp_path / "never-tracked")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.registry_off(tmp_path / "never-tracked") is None  # a server: try it
