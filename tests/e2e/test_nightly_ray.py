"""`recsys nightly --compute ray` on the session's local Ray cluster (2 CPUs) against the same job
run locally: the same run key and gate decision, and — the steps that fan out (item embedding,
known-user vectors, every user's precomputed top-k) being deterministic here — the same vectors
and identical top-k ids in the published bundle; a rerun says "nothing new"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import build_tiny_bert, fast_config, small_sample, write_config

from recsys import bundle
from recsys.jobs.cli import main as cli_main
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel

pytestmark = pytest.mark.slow
N_ITEMS = 260


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The local nightly on a small sample: its work directory, config and result."""
    root = tmp_path_factory.mktemp("nightly_ray")
    world = {
        "bert": build_tiny_bert(root / "bert"),
        "data": small_sample(root / "data", seed=2, n_users=220, n_items=N_ITEMS),
        "workdir": root / "local",
    }
    config = fast_config(world["bert"], compute={"batch_size": 64})  # several batches per actor
    result = run_nightly(
        world["data"], config, world["workdir"], say=lambda m: None, track=False, progress=False
    )
    assert result.published, result.message
    return {**world, "result": result, "config": config}


def _nightly(capsys, config_file, data, workdir, address) -> dict:
    """The command as a user types it (in this process, so it joins the session's cluster)."""
    argv = ["nightly", "--data", str(data), "--json", "--config", str(config_file), "--quiet"]
    argv += ["--workdir", str(workdir), "--no-tracking", "--compute", "ray"]
    capsys.readouterr()
    assert cli_main([*argv, "--ray-address", address]) == 0
    return json.loads(capsys.readouterr().out)


def _step(workdir, run_key: str, name: str) -> dict:
    path = workdir / "runs" / run_key / "steps" / f"{name}.json"
    return json.loads(path.read_text())["result"]


def test_recsys_nightly_compute_ray_matches_the_local_run(ray_cluster, local_run, tmp_path, capsys):
    config_file = write_config(tmp_path / "config.toml", local_run["config"])
    address = ray_cluster.get_runtime_context().gcs_address
    data, workdir, local = local_run["data"], tmp_path / "ray", local_run["result"]
    first = _nightly(capsys, config_file, data, workdir, address)
    assert first["run_key"] == local.run_key  # where a job runs is not part of its key
    assert first["published"] and first["promoted"] == local.promoted
    gate = _step(workdir, local.run_key, "gate")
    assert gate["promote"] == _step(local_run["workdir"], local.run_key, "gate")["promote"]
    assert _step(workdir, local.run_key, "embed")["computed"] == N_ITEMS

    on_ray = RecommenderModel.load(bundle.current_bundle(workdir))
    at_home = RecommenderModel.load(bundle.current_bundle(local_run["workdir"]))
    assert np.array_equal(on_ray.topk.item_idx, at_home.topk.item_idx)  # every user's top-k
    np.testing.assert_allclose(on_ray.topk.score, at_home.topk.score, rtol=1e-5, atol=1e-6)
    text, twin = on_ray.ranker.sources["text"], at_home.ranker.sources["text"]
    assert float(np.abs(text.item_vectors - twin.item_vectors).max()) <= 1e-5
    known = [(s.known_user_vectors, s.known_user_keys) for s in (text, twin)]
    assert float(np.abs(known[0][0] - known[1][0]).max()) <= 1e-5
    assert np.array_equal(known[0][1], known[1][1])

    again = _nightly(capsys, config_file, data, workdir, address)
    assert again["published"] is None and "nothing new" in again["message"]
