"""Bundle stage: what a work directory keeps of its bundles and runs — plans first, deletions
after (recsys.pipeline.gc adds the encoders and caches; reads pointers, promotions.jsonl and
manifests; the prune_* functions delete under bundles/ and runs/).

Kept bundles: the newest `keep_bundles`, plus every version a pointer names, the champion a
rollback would go back to, and versions pinned by `[serving] variants`. Kept runs: those kept
whole (the run in progress; for `recsys gc`, every unfinished run: the next nightly resumes it);
a finished run whose bundle is kept only as its step manifests and run.json (so the same data +
config again says "nothing new"); every other run is deleted (a full model copy each, about
17 MB a night on the 3,000-item sample).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys import bundle
from recsys.bundle_verified import remove_markers
from recsys.config import PipelineConfig
from recsys.steps import RUN_FILE, STEPS_DIR

RUNS = "runs"
STEPS = STEPS_DIR  # a run's step manifests (recsys.steps.StepRunner)
LAST_STEP = "prune"  # its manifest marks a finished nightly run
KEEP_OF_A_RUN = (STEPS_DIR, RUN_FILE)  # what a trimmed run keeps


@dataclass
class RunsPlan:
    removed: list[str] = field(default_factory=list)  # runs/<key>/ deleted whole
    trimmed: list[str] = field(default_factory=list)  # cut to KEEP_OF_A_RUN
    kept: list[str] = field(default_factory=list)  # every run left (trimmed ones included)


def prune(workdir: Path, config: PipelineConfig, run_key: str) -> dict[str, Any]:
    """Old bundles, then the runs they no longer need (the run `run_key` is in progress)."""
    removed = prune_bundles(workdir, config.nightly.keep_bundles, pinned=variant_pins(config))
    kept_keys = run_keys_of_bundles(workdir)
    runs = prune_runs(workdir, kept_keys, in_progress=run_key)
    return {"removed": removed, **runs}


def variant_pins(config: PipelineConfig) -> list[str]:
    """Versions `[serving] variants` names (CURRENT/CHALLENGER are pointers: pinned anyway)."""
    return [v for v in config.serving.variants if v not in bundle.POINTERS]


def pinned_versions(workdir: Path, extra: Iterable[str] = ()) -> set[str]:
    """Versions never deleted: pointers, the rollback target, and `extra` (serving variants).
    An unreadable pointer raises BundleError: nothing is deleted while CURRENT is in doubt."""
    pinned = {bundle.read_pointer(workdir, name) for name in bundle.POINTERS}
    pinned |= {bundle.previous_version(workdir)} | set(extra)
    return {v for v in pinned if v is not None}


def bundles_to_remove(workdir: Path, keep: int, pinned: Iterable[str] = ()) -> list[str]:
    """The oldest bundles beyond the newest `keep`, never a pinned one; deletes nothing."""
    root = bundle.bundles_dir(workdir)
    if not root.is_dir():
        return []
    keep_always = pinned_versions(workdir, pinned)
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [v for v in versions[: max(0, len(versions) - keep)] if v not in keep_always]


def stale_staging(workdir: Path) -> list[Path]:
    """bundles/.staging-*: a publish cut short (only ever stale under the work-directory lock)."""
    root = bundle.bundles_dir(workdir)
    return sorted(root.glob(".staging-*")) if root.is_dir() else []


def prune_bundles(workdir: Path, keep: int, pinned: Iterable[str] = ()) -> list[str]:
    """Delete the oldest bundles beyond `keep`, never a pinned one; stale staging too."""
    removed = bundles_to_remove(workdir, keep, pinned)
    for stale in stale_staging(workdir):
        shutil.rmtree(stale, ignore_errors=True)
    for version in removed:
        shutil.rmtree(bundle.bundles_dir(workdir) / version)
        remove_markers(bundle.bundles_dir(workdir), version)
    return removed


def run_keys_of_bundles(workdir: Path, excluded: Iterable[str] = ()) -> set[str]:
    """The run keys the published bundles (but `excluded` versions) came from."""
    skip = set(excluded)
    manifests = [m for m in bundle.list_bundles(workdir) if m["version"] not in skip]
    return {m.get("run_key") for m in manifests} - {None}


def finished(run: Path) -> bool:
    return (run / STEPS / f"{LAST_STEP}.json").is_file()


def plan_runs(workdir: Path, kept_keys: set[str], keep_whole: Iterable[str] = ()) -> RunsPlan:
    """Which runs/<key>/ go, which are trimmed to their manifests; deletes nothing."""
    root, whole = Path(workdir) / RUNS, set(keep_whole)
    plan = RunsPlan()
    for run in sorted(root.iterdir()) if root.is_dir() else []:
        if not run.is_dir():
            continue
        if run.name in whole:
            plan.kept.append(run.name)
        elif run.name not in kept_keys:
            plan.removed.append(run.name)
        else:
            plan.kept.append(run.name)
            if finished(run) and trimmable_parts(run):
                plan.trimmed.append(run.name)
    return plan


def trimmable_parts(run: Path) -> list[Path]:
    """Everything of a run directory but its manifests and identity."""
    return sorted(p for p in run.iterdir() if p.name not in KEEP_OF_A_RUN)


def unfinished_runs(workdir: Path) -> list[str]:
    """Runs a nightly started and did not finish (killed, or a stage command's)."""
    root = Path(workdir) / RUNS
    runs = sorted(root.iterdir()) if root.is_dir() else []
    return [r.name for r in runs if r.is_dir() and not finished(r)]


def prune_runs(workdir: Path, kept_keys: set[str], in_progress: str | None) -> dict[str, list]:
    """Delete runs/<key>/ nothing needs; trim finished runs of kept bundles to their manifests."""
    plan = plan_runs(workdir, kept_keys, [in_progress] if in_progress else [])
    root = Path(workdir) / RUNS
    for name in plan.removed:
        shutil.rmtree(root / name)
    for name in plan.trimmed:
        for part in trimmable_parts(root / name):
            remove(part)
    return {"runs_removed": plan.removed, "runs_trimmed": plan.trimmed}


def remove(path: Path) -> None:
    """A file, link or directory tree (a link is removed, never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
