"""Bundle stage: what a work directory keeps — the nightly's last step deletes old bundles and the
runs/<run key>/ directories nothing kept needs (reads pointers, promotions.jsonl and manifests;
deletes under bundles/ and runs/).

Kept bundles: the newest `keep_bundles`, plus every version a pointer names, the champion a
rollback would go back to, and versions pinned by `[serving] variants`. Kept runs: the run in
progress whole; a finished run whose bundle is kept only as its step manifests (steps/*.json: so
the same data + config again says "nothing new"); every other run is deleted (a full model copy
each, about 17 MB a night on the 3,000-item sample).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recsys import bundle
from recsys.config import PipelineConfig

RUNS = "runs"
STEPS = "steps"  # a run's step manifests (recsys.steps.StepRunner)


def prune(workdir: Path, config: PipelineConfig, run_key: str) -> dict[str, Any]:
    """The nightly's prune step: old bundles, then the runs they no longer need."""
    variants = [v for v in config.serving.variants if v not in bundle.POINTERS]
    removed = prune_bundles(workdir, config.nightly.keep_bundles, pinned=variants)
    kept_keys = {m.get("run_key") for m in bundle.list_bundles(workdir)} - {None}
    runs = prune_runs(workdir, kept_keys, in_progress=run_key)
    return {"removed": removed, **runs}


def pinned_versions(workdir: Path, extra: Iterable[str] = ()) -> set[str]:
    """Versions never deleted: pointers, the rollback target, and `extra` (serving variants).
    An unreadable pointer raises BundleError: nothing is deleted while CURRENT is in doubt."""
    pinned = {bundle.read_pointer(workdir, name) for name in bundle.POINTERS}
    pinned |= {bundle.previous_version(workdir)} | set(extra)
    return {v for v in pinned if v is not None}


def prune_bundles(workdir: Path, keep: int, pinned: Iterable[str] = ()) -> list[str]:
    """Delete the oldest bundles beyond `keep`, never a pinned one; stale staging too."""
    root = bundle.bundles_dir(workdir)
    if not root.is_dir():
        return []
    keep_always = pinned_versions(workdir, pinned)
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for version in versions[: max(0, len(versions) - keep)]:
        if version not in keep_always:
            shutil.rmtree(root / version)
            removed.append(version)
    return removed


def prune_runs(workdir: Path, kept_keys: set[str], in_progress: str | None) -> dict[str, list]:
    """Delete runs/<key>/ nothing needs; trim finished runs of kept bundles to their manifests."""
    root = Path(workdir) / RUNS
    removed, trimmed = [], []
    for run in sorted(root.iterdir()) if root.is_dir() else []:
        if run.name == in_progress or not run.is_dir():
            continue
        finished = (run / STEPS / "prune.json").is_file()
        if run.name not in kept_keys:
            shutil.rmtree(run)
            removed.append(run.name)
        elif finished and any(p.name != STEPS for p in run.iterdir()):
            for part in run.iterdir():
                if part.name == STEPS:
                    continue
                if part.is_dir() and not part.is_symlink():
                    shutil.rmtree(part)
                else:
                    part.unlink()
            trimmed.append(run.name)
    return {"runs_removed": removed, "runs_trimmed": trimmed}
