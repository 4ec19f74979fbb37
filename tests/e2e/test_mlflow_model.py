"""End-to-end, the bundle as an MLflow model (issue 18): the real nightly, tracked, in two work
directories of one folder with their default stores; the champion loaded through
mlflow.pyfunc and served by `mlflow models serve` answers what `recsys recommend` does; rollbacks
(CLI and admin route) move the champion alias and record why; the parent run holds the headline
metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import polars as pl
import pytest
import requests
from support import build_tiny_bert, fast_config, small_sample, stop_process
from test_api_helpers import ADMIN_TOKEN, admin, clone_bundle

import mlflow
from recsys import bundle, tracking
from recsys.jobs.cli import main as recsys_main
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel
from recsys.serving.live import free_port, live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The nightly, tracked with the default stores, in <folder>/a and <folder>/b."""
    root = tmp_path_factory.mktemp("mlflow-model")
    bert = build_tiny_bert(root / "bert")
    data = small_sample(root / "data", seed=1, n_users=250, n_items=300)
    config = fast_config(bert)
    out = {"data": data, "config": config}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RECSYS_MLFLOW_DIR", raising=False)  # the default: derived from the workdir
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for name in ("a", "b"):
            workdir = root / "folder" / name
            result = run_nightly(data, config, workdir, say=lambda m: None, progress=False)
            assert result.published and result.promoted, result.message
            out[name] = {
                "workdir": workdir,
                "version": result.published,
                "model": tracking.registered_model_name(workdir),
                "uri": tracking.tracking_uri(workdir),
            }
    return out


@pytest.fixture
def default_stores(monkeypatch):
    monkeypatch.delenv("RECSYS_MLFLOW_DIR")  # conftest's per-test store: not what is tested here


def _client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_two_work_directories_keep_their_own_registries_and_parent_run_metrics(
    world, default_stores
):
    a, b = world["a"], world["b"]
    assert a["uri"] == f"sqlite:///{a['workdir'] / 'mlflow' / 'mlflow.db'}"
    assert b["uri"] == f"sqlite:///{b['workdir'] / 'mlflow' / 'mlflow.db'}"
    assert a["model"] != b["model"]
    for own in (a, b):
        client = _client(own["uri"])
        assert [m.name for m in client.search_registered_models()] == [own["model"]]
        champion = client.get_model_version_by_alias(own["model"], "champion")
        assert champion.tags["bundle_version"] == own["version"]
        assert champion.tags["champion_reason"].startswith("nightly gate: ")
        parent = client.get_run(champion.run_id)
        assert parent.info.run_name == "nightly" and parent.info.status == "FINISHED"
        assert parent.data.tags["workdir"] == str(own["workdir"])
        metrics = parent.data.metrics
        k = world["config"].eval.k
        for metric in world["config"].eval.metrics:
            assert 0.0 <= metrics[f"candidate_{metric}_at_{k}"] <= 1.0
        assert metrics["promoted"] == 1.0 and metrics["eval_users"] > 0
    assert bundle.read_pointer(a["workdir"]) != bundle.read_pointer(b["workdir"])


def _twenty_users(workdir) -> list[str]:
    """18 users the bundle knows (spread over its id range) and 2 it does not (cold start)."""
    known = RecommenderModel.load(bundle.current_bundle(workdir)).users.ids
    picked = [known[i] for i in np.linspace(0, len(known) - 1, 18).astype(int)]
    return picked + ["nobody-1", "nobody-2"]


def _recsys_recommend(workdir, users, k, tmp_path) -> pd.DataFrame:
    listed, out = tmp_path / "users.txt", tmp_path / "recommend.parquet"
    listed.write_text("\n".join(users) + "\n")
    argv = ["recommend", "--users", str(listed), "--k", str(k), "--out", str(out)]
    assert recsys_main([*argv, "--workdir", str(workdir), "-q"]) == 0
    return pl.read_parquet(out).to_pandas()


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(got) == len(expected) > 0
    for column in ("user_id", "rank", "item_id"):
        assert got[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), atol=1e-5)


def test_pyfunc_champion_returns_what_recsys_recommend_does(
    world, default_stores, monkeypatch, tmp_path
):
    a = world["a"]
    users = _twenty_users(a["workdir"])
    expected = _recsys_recommend(a["workdir"], users, 10, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", a["uri"])  # as a user of the registry would
    model = mlflow.pyfunc.load_model(f"models:/{a['model']}@champion")
    _assert_same(model.predict(pd.DataFrame({"user_id": users})), expected)
    by_param = model.predict(pd.DataFrame({"user_id": users[:3]}), params={"k": 4})
    assert by_param.groupby("user_id", sort=False).size().tolist() == [4, 4, 4]
    with pytest.raises(mlflow.exceptions.MlflowException, match="k of row 0: expected a whole"):
        model.predict(pd.DataFrame({"user_id": ["u"], "k": [0]}))


def _wait_for(url: str, process: subprocess.Popen, log, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"mlflow models serve exited:\n{log.read_text()[-4000:]}"
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # still starting
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow models serve not up after {timeout}s:\n{log.read_text()}")


def test_mlflow_models_serve_answers_invocations(world, default_stores, tmp_path):
    a = world["a"]
    users = _twenty_users(a["workdir"])[::4]  # 5 users, one of them unknown
    expected = _recsys_recommend(a["workdir"], users, 5, tmp_path)
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local"]
    command += ["-m", f"models:/{a['model']}@champion", "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": a["uri"]}
    # MLflow execs `uvicorn` from PATH: the virtualenv's, as in an activated environment
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, process, log)
        records = [{"user_id": u, "k": 5} for u in users]
        answer = requests.post(
            f"{url}/invocations", json={"dataframe_records": records}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        _assert_same(pd.DataFrame(answer.json()["predictions"]), expected)
        split = {
            "dataframe_split": {"columns": ["user_id"], "data": [[users[0]]]},
            "params": {"k": 5},
        }
        answer = requests.post(f"{url}/invocations", json=split, timeout=60)
        assert answer.status_code == 200, answer.text
        _assert_same(pd.DataFrame(answer.json()["predictions"]), expected.head(5))
        bad = requests.post(
            f"{url}/invocations", json={"dataframe_records": [{"user_id": "x", "k": 10**6}]}
        )
        assert bad.status_code == 400 and "expected at most the bundle's" in bad.text, bad.text
    finally:
        stop_process(process)


def _champion(own) -> tuple[str, dict[str, str]]:
    version = _client(own["uri"]).get_model_version_by_alias(own["model"], "champion")
    return version.tags["bundle_version"], version.tags


def test_rollbacks_move_the_champion_alias_and_record_why(world, default_stores):
    """b: its nightly's bundle, then two copies registered and promoted as champions (the
    register call the nightly makes); `recsys bundles rollback` and POST /admin/rollback each
    take the alias one champion back, read back through the MLflow client."""
    b = world["b"]
    workdir, first = b["workdir"], b["version"]
    for copy in ("c2", "c3"):
        version = clone_bundle(workdir, first, f"{first}-{copy}")
        with tracking.start_run("recsys-nightly", "nightly", workdir=workdir) as run:
            path = bundle.bundles_dir(workdir) / version
            tracking.log_bundle_model(run, b["model"], version, path, "champion", "nightly gate")
        bundle.set_pointer(workdir, version, reason="nightly gate")
    assert _champion(b)[0] == f"{first}-c3"

    argv = ["bundles", "rollback", "--workdir", str(workdir), "--reason", "CTR fell 30 %"]
    done = subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"CURRENT -> {first}-c2",
        f"{b['model']}@champion -> version 2",
    ]
    version, tags = _champion(b)
    assert version == f"{first}-c2" == bundle.read_pointer(workdir)
    assert tags["champion_reason"] == (
        f"rollback (recsys bundles rollback) from {first}-c3 to {first}-c2: CTR fell 30 %"
    )

    with live_server(workdir, env={"RECSYS_ADMIN_TOKEN": ADMIN_TOKEN}) as server:
        response = admin(server.url, "rollback")
    assert response.status_code == 200, response.text
    assert response.json()["rolled_back_to"] == first
    assert response.json()["registry"] == {
        "registered_model": b["model"],
        "alias": "champion",
        "moved": True,
        "version": "1",
        "detail": f"{b['model']}@champion -> version 1",
    }
    version, tags = _champion(b)
    assert version == first == bundle.read_pointer(workdir)
    assert tags["champion_reason"] == f"rollback (POST /admin/rollback) from {first}-c2 to {first}"
    assert _champion(world["a"])[0] == world["a"]["version"]  # the other work directory: as it was
