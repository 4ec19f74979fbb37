"""What a nightly's prune and `recsys gc` keep: pinned bundles (pointers, rollback target, serving
variants), the runs kept bundles came from (as step manifests), the run in progress whole, and the
encoders and caches those runs used."""

import json

import pytest

from recsys import bundle, retention
from recsys.config import load_config


def _publish(workdir, version, run_key):
    with bundle.staging(workdir, version) as stage:
        (stage / "vectors.npy").write_bytes(version.encode())
        return bundle.publish(stage, workdir, version, {"run_key": run_key})


def _run_dir(workdir, key, finished=True):
    run = workdir / "runs" / key
    (run / "steps").mkdir(parents=True)
    (run / "steps" / "publish.json").write_text("{}")
    if finished:
        (run / "steps" / "prune.json").write_text("{}")
    (run / "blend" / "model").mkdir(parents=True)
    (run / "blend" / "model" / "weights.npy").write_bytes(b"x" * 1000)
    return run


def test_variants_pinned_by_version_survive_the_prune(tmp_path):
    for n in range(1, 6):
        _publish(tmp_path, f"v{n}", f"k{n}")
        bundle.set_pointer(tmp_path, f"v{n}")
    config = load_config(None, {"nightly": {"keep_bundles": 1}, "serving": {"variants": {
        "CURRENT": 0.5, "v1": 0.5}}})  # fmt: skip
    result = retention.prune(tmp_path, config, run_key="k5")
    # v5 CURRENT, v4 the rollback target, v1 a variant: v2 and v3 go
    assert result["removed"] == ["v2", "v3"]
    assert [m["version"] for m in bundle.list_bundles(tmp_path)] == ["v1", "v4", "v5"]


def test_runs_nothing_kept_needs_are_deleted_and_kept_ones_trimmed(tmp_path):
    for key in ("old", "kept", "current"):
        _run_dir(tmp_path, key)
    _run_dir(tmp_path, "crashed-kept", finished=False)
    _run_dir(tmp_path, "stage-command", finished=False)
    result = retention.prune_runs(tmp_path, {"kept", "crashed-kept", "current"}, "current")
    assert result == {"runs_removed": ["old", "stage-command"], "runs_trimmed": ["kept"]}
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["crashed-kept", "current", "kept"]
    assert [p.name for p in (runs / "kept").iterdir()] == ["steps"]
    assert (runs / "kept" / "steps" / "prune.json").is_file()
    assert (runs / "current" / "blend" / "model" / "weights.npy").is_file()
    assert (runs / "crashed-kept" / "blend").is_dir()  # unfinished: a rerun may resume it
    assert retention.prune_runs(tmp_path, {"kept", "current"}, "current")["runs_trimmed"] == []


# --- recsys gc (recsys.pipeline.gc): encoders and caches by what kept runs used ---------------


def _manifest(run, step, result):
    (run / "steps").mkdir(parents=True, exist_ok=True)
    (run / "steps" / f"{step}.json").write_text(json.dumps({"step": step, "result": result}))


def _workdir_with_history(root):
    """Four nights (bundle vN from run kN, its encoder and caches), a newer unused encoder, a
    training cut short, a killed run, stale cache entries: the files gc decides about."""
    encoders = {"k1": "E1", "k2": "E2", "k3": "E2", "k4": "E3"}  # E2 reused by the next night
    for n in range(1, 5):
        key, enc = f"k{n}", encoders[f"k{n}"]
        enc_dir = f"/moved/work/encoders/{_encoder_name(enc)}"  # matched by name
        _publish(root, f"v{n}", key)
        bundle.set_pointer(root, f"v{n}", reason="nightly gate")  # v4 CURRENT, v3 rollback
        run = _run_dir(root, key)
        _manifest(run, "tune", {"key": f"t{n}", "chosen": {}})
        _manifest(run, "collab", {"key": f"c{n}", "reused": False})
        _manifest(run, "refit", {"key": f"r{n}"})
        _manifest(run, "encoder", {"encoder_dir": enc_dir, "encoder_hash": f"h{enc}"})
        for folder in (f"cache/collab/c{n}", f"cache/collab/r{n}"):
            (root / folder).mkdir(parents=True)
            (root / folder / "done").write_text("x")
        (root / "cache" / "tune").mkdir(parents=True, exist_ok=True)
        (root / "cache" / "tune" / f"t{n}.json").write_text("{}")
    killed = root / "runs" / "killed"
    _manifest(killed, "collab", {"key": "cx"})
    for name, done in (("E0", False), ("E1", True), ("E2", True), ("E3", True), ("E4", True)):
        folder = root / "encoders" / _encoder_name(name)
        folder.mkdir(parents=True)
        (folder / "encoder.json").write_text(json.dumps({"encoder_hash": f"h{name}"}))
        if done:  # E0: a training cut short, never resumed
            (folder / "trained.json").write_text("{}")
    for name in ("hE1", "hE2", "hE3", "hE4", "hold"):
        (root / "cache" / "embeddings" / name).mkdir(parents=True)
    for name in ("cx", ".c9.tmp"):
        (root / "cache" / "collab" / name).mkdir(parents=True)
    (root / "encoders" / "feature-cache" / "m-L64").mkdir(parents=True)
    return root


def _encoder_name(short):
    """E1 -> 20260101T000000-E1: encoder directories sort by the time they were trained."""
    return f"2026010{short[1]}T000000-{short}"


def _tree(root):
    return {str(p.relative_to(root)): p.is_dir() or p.read_bytes() for p in root.rglob("*")}


def test_gc_keeps_the_newest_pins_and_what_kept_runs_used(tmp_path):
    from recsys.pipeline import gc

    root = _workdir_with_history(tmp_path)
    verified = root / "bundles" / ".verified"  # hosts' verification markers (bundle_verified)
    verified.mkdir()
    for name in ("v1@host-a.json", "v1@host-a.lock", "v3@host-a.json"):
        (verified / name).write_text("{}")
    config = load_config(None, {"nightly": {"keep_bundles": 1, "keep_encoders": 1}})
    before = _tree(root)
    planned = gc.collect(root, config, keep_unfinished=True, dry_run=True)
    assert _tree(root) == before  # a dry run removes nothing
    done = gc.collect(root, config, keep_unfinished=True)
    assert {k: v for k, v in done.items() if k != "dry_run"} == {
        k: v for k, v in planned.items() if k != "dry_run"
    }
    # v4 newest and CURRENT, v3 the rollback target: v1, v2 and the runs they came from go
    assert done["bundles_removed"] == ["v1", "v2"]
    assert [m["version"] for m in bundle.list_bundles(root)] == ["v3", "v4"]
    assert sorted(p.name for p in verified.iterdir()) == ["v3@host-a.json"]  # v1's went with it
    assert done["runs_removed"] == ["k1", "k2"] and done["runs_trimmed"] == ["k3", "k4"]
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["k3", "k4", "killed"]
    # encoders: the newest complete one (E4), those kept runs used (E2, E3); E0 never finished
    left = {p.name for p in (root / "encoders").iterdir()}
    assert left == {*map(_encoder_name, ("E2", "E3", "E4")), "feature-cache"}  # never touched
    assert done["encoders_removed"] == [_encoder_name("E0"), _encoder_name("E1")]
    assert sorted(p.name for p in (root / "cache" / "embeddings").iterdir()) == [
        "hE2",
        "hE3",
        "hE4",
    ]
    collab = sorted(p.name for p in (root / "cache" / "collab").iterdir())
    assert collab == ["c3", "c4", "cx", "r3", "r4"]  # cx: the killed run's, kept for its rerun
    assert sorted(p.name for p in (root / "cache" / "tune").iterdir()) == ["t3.json", "t4.json"]
    assert done["tune_caches_removed"] == ["t1.json", "t2.json"]
    assert done["bytes_freed"] > 0


def test_gc_never_removes_what_challenger_a_variant_or_the_run_in_progress_needs(tmp_path):
    from recsys.pipeline import gc

    root = _workdir_with_history(tmp_path)
    bundle.set_pointer(root, "v1", "CHALLENGER")
    config = load_config(None, {"nightly": {"keep_bundles": 1}, "serving": {"variants": {
        "CURRENT": 0.5, "v2": 0.5}}})  # fmt: skip
    done = gc.collect(root, config, in_progress="killed")  # the nightly's own prune step
    assert done["bundles_removed"] == [] and done["runs_removed"] == []
    assert done["kept"]["pinned"] == ["v1", "v2", "v3", "v4"]
    assert (root / "cache" / "collab" / "c1" / "done").is_file()  # CHALLENGER's run used it
    assert (root / "cache" / "embeddings" / "hE1").is_dir()
    assert (root / "runs" / "killed").is_dir()  # in progress: whole
    assert not (root / "cache" / "collab" / ".c9.tmp").exists()
    assert "hold" in done["embedding_caches_removed"]
    (root / "CHALLENGER").write_bytes(b"\xff not a version")
    before = _tree(root)
    with pytest.raises(bundle.BundleError, match="CHALLENGER"):  # in doubt: nothing removed
        gc.collect(root, config)
    assert _tree(root) == before
