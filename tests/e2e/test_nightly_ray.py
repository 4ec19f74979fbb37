"""`recsys nightly --compute ray` on the session's local Ray cluster (2 CPUs), the encoder trained
by 2 Ray Train ranks (DDP, gloo), the command killed with SIGKILL once the encoder step's manifest
appears and run again (in this process): the finished steps are reused (the encoder is not
retrained), the bundle is published, a third run says "nothing new". Against the same job run
locally with that encoder (the work directory holds it: encoder.retrain_every_days reuses it):
the same run key and gate decision, and — the steps that fan out (item embedding, known-user
vectors, every user's precomputed top-k) being deterministic here — the same vectors and
identical top-k ids."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from support import REPO, build_tiny_bert, fast_config, small_sample, write_config

from recsys import bundle
from recsys.jobs.cli import main as cli_main
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel

pytestmark = pytest.mark.slow
N_ITEMS = 260
KILL_AFTER = "encoder"  # the step whose manifest triggers the SIGKILL


def _command(world, address: str) -> list[str]:
    argv = ["nightly", "--data", str(world["data"]), "--json", "--config", str(world["toml"])]
    argv += ["--workdir", str(world["ray"]), "--no-tracking", "-q", "--compute", "ray"]
    return [sys.executable, "-m", "recsys.jobs.cli", *argv, "--ray-address", address]


def _killed_after(command: list[str], workdir, step: str, timeout: float = 300) -> dict:
    """Start the nightly, SIGKILL it as soon as runs/*/steps/<step>.json exists; that manifest."""
    log = workdir.parent / "killed.stderr"  # a file, not a pipe nobody drains while we poll
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    try:
        while not (found := list(workdir.glob(f"runs/*/steps/{step}.json"))):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {step} manifest after {timeout} s"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return json.loads(found[0].read_text())


def _completed(command: list[str]) -> dict:
    """The same command in this process (it joins the session's cluster; no second start-up)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(command[3:]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory):
    """The Ray nightly (killed, resumed, run again) and the local one on a small sample."""
    root = tmp_path_factory.mktemp("nightly_ray")
    world = {
        "bert": build_tiny_bert(root / "bert"),
        "data": small_sample(root / "data", seed=2, n_users=220, n_items=N_ITEMS),
        "ray": root / "ray",
        "local": root / "local",
    }
    config = fast_config(world["bert"], compute={"batch_size": 64, "train_workers": 2})
    world["toml"] = write_config(root / "config.toml", config)
    command = _command(world, ray_cluster.get_runtime_context().gcs_address)
    killed = _killed_after(command, world["ray"], KILL_AFTER)
    resumed = _completed(command)
    again = _completed(command)
    # the local run reuses the encoder the ranks trained (its files, copied), fits the rest
    shutil.copytree(world["ray"] / "encoders", world["local"] / "encoders")
    local = run_nightly(
        world["data"], config, world["local"], say=lambda m: None, track=False, progress=False
    )
    assert local.published, local.message
    return {**world, "killed": killed, "resumed": resumed, "again": again, "at_home": local}


def _step(workdir, run_key: str, name: str) -> dict:
    path = workdir / "runs" / run_key / "steps" / f"{name}.json"
    return json.loads(path.read_text())["result"]


def test_killed_ray_nightly_resumes_publishes_then_has_nothing_new(runs):
    resumed, workdir = runs["resumed"], runs["ray"]
    assert resumed["published"], resumed["message"]
    assert bundle.current_bundle(workdir).name == resumed["published"]
    reused = {s["step"] for s in resumed["steps"] if s["resumed"]}
    assert {"validate", "split", KILL_AFTER} <= reused  # finished before the kill: not rerun
    encoder = _step(workdir, resumed["run_key"], "encoder")
    assert encoder == runs["killed"]["result"] and encoder["trained"]  # trained once, by DDP
    encoders = [p for p in (workdir / "encoders").iterdir() if p.name != "feature-cache"]
    assert [str(p) for p in encoders] == [encoder["encoder_dir"]]
    ddp = json.loads(
        (workdir / "runs" / resumed["run_key"] / "encoder/ddp/result.json").read_text()
    )
    assert ddp["world"] == 2 and ddp["device"] == "cpu"
    assert runs["again"]["published"] is None and "nothing new" in runs["again"]["message"]


def test_ray_nightly_matches_the_local_run(runs):
    resumed, local = runs["resumed"], runs["at_home"]
    assert resumed["run_key"] == local.run_key  # where a job runs is not part of its key
    assert resumed["promoted"] == local.promoted
    key = local.run_key
    assert (
        _step(runs["ray"], key, "gate")["promote"] == _step(runs["local"], key, "gate")["promote"]
    )
    assert _step(runs["ray"], key, "embed")["computed"] == N_ITEMS
    assert not _step(runs["local"], key, "encoder")["trained"]  # the ranks' encoder, reused

    on_ray = RecommenderModel.load(bundle.current_bundle(runs["ray"]))
    at_home = RecommenderModel.load(bundle.current_bundle(runs["local"]))
    assert on_ray.ranker.weights == at_home.ranker.weights  # the same blend learned
    assert np.array_equal(on_ray.topk.item_idx, at_home.topk.item_idx)  # every user's top-k
    # the item vectors embedded on Ray may differ by 1e-5 (below); z-scored, so may the scores
    np.testing.assert_allclose(on_ray.topk.score, at_home.topk.score, rtol=1e-5, atol=1e-5)
    text, twin = on_ray.ranker.sources["text"], at_home.ranker.sources["text"]
    assert float(np.abs(text.item_vectors - twin.item_vectors).max()) <= 1e-5
    known = [(s.known_user_vectors, s.known_user_keys) for s in (text, twin)]
    assert float(np.abs(known[0][0] - known[1][0]).max()) <= 1e-5
    assert np.array_equal(known[0][1], known[1][1])
