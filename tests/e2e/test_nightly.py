"""End-to-end: the nightly job on a generated sample with a tiny BERT — publish, idempotency,
incremental re-embedding, the promotion gate, bad input, and MLflow lineage."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from support import (
    REPO,
    build_test_bundle,
    build_tiny_bert,
    fast_config,
    small_sample,
    stop_process,
    write_config,
)

import mlflow
from recsys import bundle, tracking
from recsys.pipeline.nightly import plan_nightly, run_nightly
from recsys.steps import LockedError, WorkdirLock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    return {
        "bert": build_tiny_bert(root / "bert"),
        "data": small_sample(root / "data", seed=1, n_users=250, n_items=300),
    }


def _run(data, config, workdir, track=False):
    return run_nightly(data, config, workdir, say=lambda m: None, track=track, progress=False)


def _step(workdir, key, name):
    return bundle_step(Path(workdir) / "runs" / key, name)


def bundle_step(run_dir: Path, name: str) -> dict:
    import json

    return json.loads((run_dir / "steps" / f"{name}.json").read_text())["result"]


def test_publish_then_nothing_new_then_incremental(world, tmp_path):
    config = fast_config(world["bert"])
    first = _run(world["data"], config, tmp_path)
    assert first.published and first.promoted
    assert bundle.read_pointer(tmp_path) == first.published
    bundle.verify(bundle.current_bundle(tmp_path))
    assert _step(tmp_path, first.run_key, "embed")["computed"] == 300

    again = _run(world["data"], config, tmp_path)
    assert again.published is None and "nothing new" in again.message
    assert len(bundle.list_bundles(tmp_path)) == 1

    data = tmp_path / "data2"
    shutil.copytree(world["data"], data)
    items = pl.read_csv(data / "items.csv", infer_schema=False)
    changed = items["item_id"].head(3).to_list()
    items = items.with_columns(
        pl.when(pl.col("item_id").is_in(changed))
        .then(pl.col("title") + " (remastered)")
        .otherwise(pl.col("title"))
        .alias("title")
    )
    items.write_csv(data / "items.csv")
    third = _run(data, config, tmp_path)
    assert third.published and third.run_key != first.run_key
    assert _step(tmp_path, third.run_key, "encoder")["trained"] is False  # not due yet
    embed = _step(tmp_path, third.run_key, "embed")
    assert (embed["computed"], embed["reused"]) == (3, 297)
    # runs/: the run in progress whole; the first run (its bundle kept) only as step manifests
    assert {p.name for p in (tmp_path / "runs" / first.run_key).iterdir()} == {"steps", "run.json"}
    assert (tmp_path / "runs" / third.run_key / "published" / "model").is_dir()
    assert _step(tmp_path, third.run_key, "prune")["runs_trimmed"] == [first.run_key]
    assert _run(world["data"], config, tmp_path).published is None  # still "nothing new"


def test_new_items_get_a_text_popularity_prior(world, tmp_path):
    """Items in the catalog with no interactions get the text prior in the bundle's content
    source; items with training interactions never do; cold_prior = 0 switches it off."""
    import numpy as np

    from recsys.data.loaders import load_dataset
    from recsys.data.split import split_interactions
    from recsys.ranking.model import RecommenderModel

    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    items = pl.read_csv(data / "items.csv", infer_schema=False)
    new = items.head(4).with_columns(
        (pl.lit("new-") + pl.col("item_id")).alias("item_id"),
        (pl.col("title") + " (sequel)").alias("title"),
    )
    pl.concat([items, new]).write_csv(data / "items.csv")
    config = fast_config(world["bert"])
    assert _run(data, config, tmp_path / "on").published
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "on"))
    bias = model.ranker.sources["text"].item_bias  # (n_items,)
    new_idx = [model.item_map.to_idx(i) for i in new["item_id"]]
    assert bias is not None and (bias[new_idx] != 0).all()
    dataset = load_dataset(data, config.data)
    train = split_interactions(dataset.interactions, config.split).train
    trained = np.unique(dataset.interactions["item_idx"].to_numpy())  # refit: on every one
    assert (bias[trained] == 0).all()
    evaluated = RecommenderModel.load(bundle.current_bundle(tmp_path / "on"), evaluated=True)
    split_bias = evaluated.ranker.sources["text"].item_bias  # the candidate's: split.train counts
    assert (split_bias[np.unique(train["item_idx"].to_numpy())] == 0).all()
    assert (split_bias[new_idx] != 0).all()
    ids, _ = model.ranker.sources["text"].recommend(
        [model.query_for(None, [], "a sequel")[0]], k=len(model.item_map)
    )
    assert set(new_idx) <= set(ids[0].tolist())  # still reachable through the text side

    off = fast_config(world["bert"], blend={"cold_prior": 0.0})
    assert _run(data, off, tmp_path / "off").published
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "off"))
    assert model.ranker.sources["text"].item_bias is None


def test_gate_holds_a_degraded_candidate(world, tmp_path):
    collab = {"factors": 32, "epochs": 25}  # a champion clearly better than popularity alone
    good = fast_config(world["bert"], collab=collab)
    first = _run(world["data"], good, tmp_path, track=True)
    champion = bundle.read_pointer(tmp_path)
    broken = fast_config(  # the blend broken: popularity only
        world["bert"],
        collab=collab,
        blend={"fixed_weights": {"text": 0.0, "collab": 0.0, "popularity": 1.0}},
    )
    second = _run(world["data"], broken, tmp_path, track=True)
    assert second.published and not second.promoted, second.message
    assert bundle.read_pointer(tmp_path) == champion == first.published
    assert bundle.read_pointer(tmp_path, "CHALLENGER") == second.published
    name = tracking.registered_model_name(tmp_path)
    assert tracking.bundle_for_alias(name, "champion", tmp_path)[0] == first.published
    assert tracking.bundle_for_alias(name, "challenger", tmp_path)[0] == second.published


def test_recommend_job_writes_the_bundles_top_k_for_every_user(world, tmp_path):
    """`recsys recommend --all` = RecommenderModel.rank_users over every known user: each
    user's stored history is the query and is excluded. With --json: its summary; and
    `recsys evaluate --json` on the same bundle."""
    from recsys.ranking.model import RecommenderModel

    assert build_test_bundle(tmp_path / "work", world["data"], world["bert"])  # fast_config
    out = tmp_path / "top.csv"
    proc = _cli(["recommend", "--all", "--k", "5", "--out", str(out), "--workdir",
                 str(tmp_path / "work"), "-q"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = pl.read_csv(out, schema_overrides={"user_id": pl.Utf8, "item_id": pl.Utf8})
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "work"))
    assert written["user_id"].n_unique() == len(model.users)
    assert written.group_by("user_id").len()["len"].max() == 5
    user = model.users.to_id(0)
    mine = written.filter(pl.col("user_id") == user).sort("rank")["item_id"].to_list()
    assert mine == [it["item_id"] for it in model.recommend(user_id=user, k=5)["items"]]
    assert not set(mine) & set(model.item_map.to_ids(model.history(0)))

    listed = tmp_path / "users.txt"
    listed.write_text("\n".join(model.users.ids[:7]) + "\n")
    wd = ["--workdir", str(tmp_path / "work")]
    out = tmp_path / "top.parquet"
    proc = _cli(["recommend", "--users", str(listed), "--k", "3", "--out", str(out), "--json", *wd])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # the file is as without --json; stdout is its summary
    assert summary["bundle"] == model.version and (summary["users"], summary["rows"]) == (7, 21)
    assert pl.read_parquet(summary["out"]).height == 21
    # `recsys evaluate --json`, tracking on: one document; MLflow's own log lines stay on stderr
    config = write_config(tmp_path / "c.toml", fast_config(world["bert"]))
    args = ["evaluate", "--a", "CURRENT", "--b", "CURRENT", "--data", str(world["data"])]
    args += ["--out", str(tmp_path / "report"), "--config", str(config), *wd]
    proc = _cli([*args, "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["verdict"]["decision"] == "inconclusive"  # one bundle against itself
    assert result["a"]["version"] == result["b"]["version"] == model.version
    ndcg = result["metrics"]["ndcg"]
    assert ndcg["family"] == "primary" and ndcg["mean_a"] == ndcg["mean_b"] > 0
    assert json.loads(Path(result["summary"]).read_text())["verdict"] == {
        k: v for k, v in result["verdict"].items() if k != "label"
    }
    run = tracking.client(tmp_path / "work").get_run(result["mlflow_run_id"])
    assert run.data.tags["verdict"] == "inconclusive"


def _cli(args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        **kw,
    )


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("drop_item_id", "item_id"),
        ("empty_interactions", "interactions"),
    ],
)
def test_bad_input_fails_and_publishes_nothing(world, tmp_path, breakage, expected):
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    if breakage == "drop_item_id":
        pl.read_csv(data / "items.csv").drop("item_id").write_csv(data / "items.csv")
    else:
        header = (data / "interactions.csv").read_text().splitlines()[0]
        (data / "interactions.csv").write_text(header + "\n")
    config = write_config(tmp_path / "c.toml", fast_config(world["bert"]))
    work = tmp_path / "work"
    proc = _cli(["nightly", "--data", str(data), "--config", str(config), "--workdir", str(work)])
    assert proc.returncode != 0
    assert "error:" in proc.stderr and expected in proc.stderr and "Traceback" not in proc.stderr
    assert bundle.read_pointer(work) is None
    assert bundle.list_bundles(work) == []


STEPS = [
    "validate",
    "split",
    "encoder",
    "embed",
    "index",
    "collab",
    "prior",
    "weights",
    "users",
    "model",
    "evaluate",
    "gate",
    "refit_weights",
    "refit",
    "refit_prior",
    "published",
    "publish",
    "prune",
]


def test_sigkill_at_every_step_boundary(world, tmp_path):
    config = write_config(tmp_path / "c.toml", fast_config(world["bert"]))
    work = tmp_path / "work"
    args = ["nightly", "--config", str(config), "--workdir", str(work), "--no-tracking", "-q"]
    first = _cli([*args, "--data", str(world["data"])])
    assert first.returncode == 0, first.stderr
    champion = bundle.current_bundle(work)
    before = {p.relative_to(champion): p.read_bytes() for p in champion.rglob("*") if p.is_file()}
    data = small_sample(tmp_path / "data2", seed=2, n_users=250, n_items=300)
    for step in STEPS:
        proc = _cli([*args, "--data", str(data)], env={"RECSYS_TEST_CRASH_AFTER": step})
        assert proc.returncode == -9, (step, proc.stderr[-2000:])
        current = bundle.current_bundle(work)
        if STEPS.index(step) < STEPS.index("publish"):
            assert current == champion, step
        after = {
            p.relative_to(champion): p.read_bytes() for p in champion.rglob("*") if p.is_file()
        }
        assert after == before, f"champion bundle changed after a kill at {step}"
        for manifest in bundle.list_bundles(work):  # every visible bundle is whole
            assert "error" not in manifest, manifest
            bundle.verify(bundle.bundles_dir(work) / manifest["version"])
    final = _cli([*args, "--data", str(data)])
    assert final.returncode == 0, final.stderr
    assert "nothing new" in final.stdout  # the kill after prune left a finished run
    assert len(bundle.list_bundles(work)) == 2


@pytest.mark.integration
def test_real_mlflow_server(world, tmp_path):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"{uri}/health", timeout=5).ok:
                    break
            except requests.RequestException:  # not up yet
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not come up in 120 s")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            result = _run(world["data"], fast_config(world["bert"]), tmp_path / "work", track=True)
            name = tracking.registered_model_name(tmp_path / "work")
            model = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # through the server
            top = model.predict(pd.DataFrame({"user_id": ["someone"], "k": [3]}))
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
        assert top["rank"].tolist() == [1, 2, 3]
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name("recsys-nightly")
        runs = client.search_runs([experiment.experiment_id])
        names = {r.info.run_name for r in runs}
        assert {"nightly", "encoder", "evaluate", "refit", "publish", "register"} <= names
        parent = next(r for r in runs if r.info.run_name == "nightly")
        assert parent.info.status == "FINISHED"
        assert {"data_hash", "config_hash", "encoder_hash", "index_type"} <= set(parent.data.tags)
        tags = parent.data.tags  # both fits: the evaluated candidate's and the published one's
        assert tags["refit"] == "true"
        assert tags["refit_sources_key"] != tags["evaluated_sources_key"]
        assert int(tags["refit_interactions"]) > int(tags["evaluated_interactions"]) > 0
        version = client.get_model_version_by_alias(name, "champion")
        assert version.tags["bundle_version"] == result.published
        assert version.run_id == parent.info.run_id
    finally:
        stop_process(server)


def _prom(path) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "workdir"))
            out[(sample.name, labels)] = sample.value
    return out


def test_json_result_textfile_metrics_and_quiet_logs(world, tmp_path):
    """--json prints the result on stdout; the job writes its Prometheus textfile metrics; a
    failed run keeps the last success time; without a terminal no progress bar is drawn and
    every step line is timestamped."""
    config = write_config(tmp_path / "c.toml", fast_config(world["bert"]))
    work, prom = tmp_path / "work", tmp_path / "textfile" / "recsys.prom"
    args = ["nightly", "--config", str(config), "--workdir", str(work), "--no-tracking"]
    args += ["--json", "--metrics-file", str(prom)]
    proc = _cli([*args, "--data", str(world["data"])])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["published"] and result["promoted"] is True
    assert [s["step"] for s in result["steps"]] == [*STEPS[:-1], "prune"]
    assert "\r" not in proc.stderr and "Loading weights" not in proc.stderr
    step_lines = [line for line in proc.stderr.splitlines() if "] validate" in line]
    assert step_lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", x) for x in step_lines)
    metrics = _prom(prom)
    success = metrics[("recsys_nightly_last_success_timestamp_seconds", ())]
    assert abs(success - time.time()) < 600
    assert metrics[("recsys_nightly_last_run_success", ())] == 1
    assert metrics[("recsys_nightly_gate_promoted", ())] == 1
    assert metrics[("recsys_nightly_step_duration_seconds", (("step", "encoder"),))] > 0
    broken = tmp_path / "broken"
    shutil.copytree(world["data"], broken)
    pl.read_csv(broken / "items.csv").drop("item_id").write_csv(broken / "items.csv")
    failed = _cli([*args, "--data", str(broken)])
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    metrics = _prom(prom)
    assert metrics[("recsys_nightly_last_run_success", ())] == 0
    assert metrics[("recsys_nightly_last_success_timestamp_seconds", ())] == success


def _snapshot(root: Path) -> dict | None:
    """Every path under root -> its bytes (None for a directory); None when root is absent."""
    if not root.exists():
        return None
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def _dry(data, config, work, **kw) -> dict:
    """plan_nightly, checked to leave the work directory byte for byte as it was."""
    before = _snapshot(work)
    plan = plan_nightly(data, config, work, track=False, **kw)
    assert _snapshot(work) == before
    return {s["step"]: s["action"] for s in plan.steps} | {"_plan": plan}


def test_dry_run_says_what_would_run_and_writes_nothing(world, tmp_path):
    """Nothing there, a run killed after `index`, a finished run, --force, a held lock: the dry
    run names each step's action and never writes (no lock file, run directory or MLflow run)."""
    config, work = fast_config(world["bert"]), tmp_path / "work"
    fresh = _dry(world["data"], config, work)
    assert work.exists() is False  # not even the work directory
    skipped = {"tune": "skip", "register": "skip"}  # [collab] tune off; --no-tracking
    towers = ("refit_encoder", "refit_embed", "refit_index", "refit_users")
    skipped.update(dict.fromkeys(towers, "skip"))  # [nightly] refit_towers_epochs = 0
    assert fresh == {**dict.fromkeys(STEPS, "run"), **skipped, "_plan": fresh["_plan"]}
    args = ["nightly", "--data", str(world["data"]), "--workdir", str(work), "--no-tracking"]
    args += ["--config", str(write_config(tmp_path / "c.toml", config))]
    killed = _cli([*args, "-q"], env={"RECSYS_TEST_CRASH_AFTER": "index"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    before = _snapshot(work)
    proc = _cli([*args, "--dry-run", "--json"])  # the command: one JSON document, no writes
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _snapshot(work) == before
    plan = json.loads(proc.stdout)
    actions = {s["step"]: s["action"] for s in plan["steps"]}
    done = STEPS[: STEPS.index("index") + 1]
    assert [step for step, action in actions.items() if action == "resume"] == done
    assert actions["collab"] == "run" and actions["register"] == "skip"
    why = {s["step"]: s["why"] for s in plan["steps"]}
    for step in ("refit_weights", "refit"):  # their cache key holds what collab will choose
        assert why[step].startswith("fits the sources with the recency the collab step chooses")
    assert plan["nothing_new"] is False and plan["message"].startswith("would resume run")
    published = _run(world["data"], config, work).published
    finished = _dry(world["data"], config, work)["_plan"]
    assert finished.nothing_new and finished.bundle == published and finished.steps == []
    forced = _dry(world["data"], config, work, force=True)
    assert forced["_plan"].forced and forced["_plan"].run_key != finished.run_key
    assert "resume" not in forced.values() and forced["register"] == "skip"
    collab = next(s for s in forced["_plan"].steps if s["step"] == "collab")["why"]
    assert collab.startswith("fits the sources afresh (forced")
    with WorkdirLock(work):
        before = _snapshot(work)
        with pytest.raises(LockedError, match="another run holds this work directory"):
            plan_nightly(world["data"], config, work, track=False)
        assert _snapshot(work) == before


def test_force_publishes_a_new_attempt_of_published_inputs(world, tmp_path):
    """--force on an unchanged day: a new run key (the attempt folded in), every step run again
    and the fitted sources refitted, a new bundle version; the encoder (not due) and the item
    vectors of the same encoder and texts are reused. Then a plain run names the new bundle."""
    config, work = fast_config(world["bert"]), tmp_path / "work"
    published = build_test_bundle(work, world["data"], world["bert"])  # a nightly of this config
    first_key = bundle.read_manifest(bundle.bundles_dir(work) / published)["run_key"]
    args = ["nightly", "--data", str(world["data"]), "--workdir", str(work), "--no-tracking"]
    args += ["--config", str(write_config(tmp_path / "c.toml", config)), "--force", "--json"]
    proc = _cli(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    forced = json.loads(proc.stdout)
    assert forced["published"] not in (None, published)
    assert forced["run_key"] != first_key and not any(s["resumed"] for s in forced["steps"])
    assert bundle.read_pointer(work) == forced["published"]  # the same model: not worse
    identity = json.loads((work / "runs" / forced["run_key"] / "run.json").read_text())
    assert identity["base_key"] == first_key and identity["attempt"].startswith("forced-")
    assert _step(work, forced["run_key"], "collab")["reused"] is False  # refitted
    assert _step(work, forced["run_key"], "encoder")["trained"] is False  # not due yet
    assert _step(work, forced["run_key"], "embed")["computed"] == 0  # same encoder, same texts
    manifest = bundle.read_manifest(bundle.bundles_dir(work) / forced["published"])
    assert manifest["run_key"] == forced["run_key"]
    again = _run(world["data"], config, work)
    assert again.published is None and forced["published"] in again.message
    assert len(bundle.list_bundles(work)) == 2
