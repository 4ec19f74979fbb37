"""What a nightly's prune keeps: pinned bundles (pointers, rollback target, serving variants) and
the runs kept bundles came from (as step manifests), the run in progress whole."""

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
