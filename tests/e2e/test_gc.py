"""End-to-end: `recsys gc` on real nightly outputs — three nights on new data, an encoder trained
each — run as a user would: the newest N bundles and whatever CURRENT, CHALLENGER and the rollback
target need survive and still load; a dry run removes nothing; --json parses; a held lock
refuses it (75)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, build_tiny_bert, fast_config, small_sample

from recsys import bundle
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel
from recsys.steps import WorkdirLock

pytestmark = pytest.mark.slow
ALWAYS_PROMOTE = {"tolerance": 1.0, "floors": {}, "min_users": 0}  # CURRENT: the newest night


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("gc")
    config = fast_config(
        build_tiny_bert(root / "bert"),
        encoder={"retrain_every_days": 0},  # a new encoder (and embedding cache) every night
        gate=ALWAYS_PROMOTE,
        nightly={"keep_bundles": 10, "keep_encoders": 10},  # the nightly's prune keeps all
    )
    work, runs = root / "work", []
    for seed in (1, 2, 3):
        data = small_sample(root / f"data{seed}", seed=seed, n_users=150, n_items=200)
        result = run_nightly(data, config, work, say=lambda m: None, track=False, progress=False)
        assert result.promoted, result.message
        runs.append({"data": data, "version": result.published, "key": result.run_key})
    return {"root": root, "work": work, "config": config, "runs": runs}


def _copy(nights, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(nights["work"], work, symlinks=True)
    return work


def _gc(work: Path, *args: str, keep: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECSYS_NIGHTLY__KEEP_BUNDLES": str(keep)}
    env["RECSYS_NIGHTLY__KEEP_ENCODERS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", "gc", "--workdir", str(work), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.is_dir() or p.read_bytes() for p in root.rglob("*")}


def _step(work: Path, key: str, name: str) -> dict:
    return json.loads((work / "runs" / key / "steps" / f"{name}.json").read_text())["result"]


def test_gc_keeps_the_newest_and_what_current_and_challenger_need(nights, tmp_path):
    work, (one, two, three) = _copy(nights, tmp_path), nights["runs"]
    assert bundle.read_pointer(work) == three["version"]
    assert bundle.previous_version(work) == two["version"]  # the rollback target
    bundle.set_pointer(work, one["version"], "CHALLENGER")
    before = _tree(work)
    dry = _gc(work, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert _tree(work) == before  # a dry run removes nothing
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["bundles_removed"] == []  # all three pinned
    assert planned["kept"]["pinned"] == [one["version"], two["version"], three["version"]]
    (work / "CHALLENGER").write_text("")  # no challenger now: the oldest night goes
    planned = json.loads(_gc(work, "--dry-run", "--json").stdout)
    assert planned["bundles_removed"] == [one["version"]]
    done = _gc(work, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {k: v for k, v in result.items() if k != "dry_run"} == {
        k: v for k, v in planned.items() if k != "dry_run"
    }
    assert [m["version"] for m in bundle.list_bundles(work)] == [two["version"], three["version"]]
    assert result["runs_removed"] == [one["key"]] and not (work / "runs" / one["key"]).exists()
    encoder_one = Path(_step(nights["work"], one["key"], "encoder")["encoder_dir"]).name
    assert result["encoders_removed"] == [encoder_one]
    hashes = [_step(nights["work"], r["key"], "encoder")["encoder_hash"] for r in nights["runs"]]
    assert result["embedding_caches_removed"] == [hashes[0]]
    assert sorted(p.name for p in (work / "cache" / "embeddings").iterdir()) == sorted(hashes[1:])
    steps = ("collab", "refit_weights", "refit")  # each fitted-source cache entry of the night
    keys = {_step(nights["work"], one["key"], step)["key"] for step in steps}
    assert sorted(result["collab_caches_removed"]) == sorted(keys)
    assert result["bytes_freed"] > 0
    for version in (two["version"], three["version"]):  # CURRENT and the rollback target load
        bundle.verify(bundle.bundles_dir(work) / version)
        model = RecommenderModel.load(bundle.bundles_dir(work) / version)
        assert len(model.recommend(user_id=model.users.to_id(0), k=5)["items"]) == 5
    again = run_nightly(three["data"], nights["config"], work, say=lambda m: None, track=False)
    assert again.published is None and "nothing new" in again.message  # manifests were kept
    human = _gc(work)
    assert human.returncode == 0 and human.stdout.splitlines()[0] == "nothing to remove"


def test_gc_refuses_while_a_nightly_holds_the_work_directory(nights, tmp_path):
    work = _copy(nights, tmp_path)
    with WorkdirLock(work):
        before = _tree(work)
        for args in ((), ("--dry-run",), ("--json",)):
            proc = _gc(work, *args)
            assert proc.returncode == 75, proc.stderr
            assert proc.stderr.startswith("error: ") and "holds this work directory" in proc.stderr
            assert proc.stdout == ""
        assert _tree(work) == before
