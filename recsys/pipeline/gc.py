"""Pipeline: the work directory's garbage collection, for `recsys gc` and the nightly's prune
step — old bundles and the runs nothing kept needs (recsys.retention), then the trained encoders
and the caches no kept run used. Reads pointers, promotions.jsonl, manifests and runs/*/steps;
deletes under bundles/, runs/, encoders/ and cache/ (never encoders/feature-cache, nor mlflow/).

What a kept run used is what its step manifests name: the fitted-source and tune cache keys
(result "key") and the encoder (result "encoder_dir", "encoder_hash").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys import bundle, retention
from recsys.bundle_verified import marker_files
from recsys.config import PipelineConfig
from recsys.pipeline.context import (
    COLLAB_CACHE,
    EMBEDDING_CACHE,
    ENCODERS,
    FEATURE_CACHE,
    TRAINED,
    TUNE_CACHE,
)
from recsys.steps import STEPS_DIR


@dataclass
class GcPlan:
    """What goes (names under their folder) and what stays; `paths()` lists the deletions."""

    workdir: Path
    bundles: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)  # finished runs cut to their manifests
    encoders: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)  # cache/embeddings/<encoder hash>
    collab: list[str] = field(default_factory=list)  # cache/collab/<key>, stale .<key>.tmp
    tune: list[str] = field(default_factory=list)  # cache/tune/<key>.json
    kept: dict[str, list[str]] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        root = self.workdir
        out = [bundle.bundles_dir(root) / name for name in [*self.bundles, *self.staging]]
        out += [m for name in self.bundles for m in marker_files(bundle.bundles_dir(root), name)]
        out += [root / retention.RUNS / name for name in self.runs]
        for name in self.trimmed:
            out += retention.trimmable_parts(root / retention.RUNS / name)
        out += [root / ENCODERS / name for name in self.encoders]
        out += [root / EMBEDDING_CACHE / name for name in self.embeddings]
        out += [root / COLLAB_CACHE / name for name in self.collab]
        return out + [root / TUNE_CACHE / name for name in self.tune]

    def to_dict(self, bytes_freed: int) -> dict[str, Any]:
        return {
            "bundles_removed": self.bundles,
            "staging_removed": self.staging,
            "runs_removed": self.runs,
            "runs_trimmed": self.trimmed,
            "encoders_removed": self.encoders,
            "embedding_caches_removed": self.embeddings,
            "collab_caches_removed": self.collab,
            "tune_caches_removed": self.tune,
            "bytes_freed": bytes_freed,
            "kept": self.kept,
        }


def plan(
    workdir: Path, config: PipelineConfig, in_progress: str | None = None, keep_unfinished=False
) -> GcPlan:
    """What the configured retention removes now; deletes nothing. `in_progress`: the run
    calling (kept whole); `keep_unfinished`: keep every unfinished run whole (gc between a
    killed nightly and its rerun). BundleError on an unreadable pointer: nothing is planned."""
    workdir = Path(workdir)
    pins = retention.variant_pins(config)
    out = GcPlan(workdir)
    out.bundles = retention.bundles_to_remove(workdir, config.nightly.keep_bundles, pins)
    out.staging = [p.name for p in retention.stale_staging(workdir)]
    whole = retention.unfinished_runs(workdir) if keep_unfinished else []
    kept_keys = retention.run_keys_of_bundles(workdir, excluded=out.bundles)
    runs = retention.plan_runs(
        workdir, kept_keys, [*whole, *([in_progress] if in_progress else [])]
    )
    out.runs, out.trimmed = runs.removed, runs.trimmed
    used = _used_by(workdir, runs.kept)
    encoders = _kept_encoders(workdir, config.nightly.keep_encoders, used["encoders"])
    out.encoders = [e for e in _encoder_dirs(workdir) if e not in encoders]
    hashes = used["hashes"] | {_encoder_hash(workdir / ENCODERS / e) for e in encoders}
    out.embeddings = [h for h in _entries(workdir / EMBEDDING_CACHE) if h not in hashes]
    out.collab = [k for k in _entries(workdir / COLLAB_CACHE) if k not in used["keys"]]
    tuned = sorted((workdir / TUNE_CACHE).glob("*")) if (workdir / TUNE_CACHE).is_dir() else []
    out.tune = [p.name for p in tuned if p.name not in {f"{k}.json" for k in used["keys"]}]
    versions = [m["version"] for m in bundle.list_bundles(workdir)]
    out.kept = {
        "bundles": [v for v in versions if v not in out.bundles],
        "pinned": sorted(retention.pinned_versions(workdir, pins)),
        "runs": runs.kept,
        "encoders": sorted(encoders),
    }
    return out


def collect(
    workdir: Path,
    config: PipelineConfig,
    in_progress: str | None = None,
    keep_unfinished: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Plan, then (unless `dry_run`) delete; the caller holds the work-directory lock."""
    found = plan(workdir, config, in_progress, keep_unfinished)
    paths = found.paths()
    size = sum(_size(p) for p in paths)
    for path in [] if dry_run else paths:
        retention.remove(path)
    return {"dry_run": dry_run, **found.to_dict(size)}


def _used_by(workdir: Path, run_keys: list[str]) -> dict[str, set[str]]:
    """Cache keys, encoder directory names and encoder hashes the kept runs' steps recorded."""
    used: dict[str, set[str]] = {"keys": set(), "encoders": set(), "hashes": set()}
    for key in run_keys:
        for manifest in sorted((workdir / retention.RUNS / key / STEPS_DIR).glob("*.json")):
            result = json.loads(manifest.read_text(encoding="utf-8")).get("result") or {}
            if isinstance(result.get("key"), str):
                used["keys"].add(result["key"])
            if isinstance(result.get("encoder_dir"), str):
                used["encoders"].add(Path(result["encoder_dir"]).name)
            if isinstance(result.get("encoder_hash"), str):
                used["hashes"].add(result["encoder_hash"])
    return used


def _encoder_dirs(workdir: Path) -> list[str]:
    """Trained (or half-trained) encoder directories, oldest first: names start with the time."""
    return [e for e in _entries(workdir / ENCODERS) if e != FEATURE_CACHE]


def _kept_encoders(workdir: Path, keep: int, used: set[str]) -> set[str]:
    """The newest `keep` complete encoders (a TRAINED marker) and every one a kept run used; an
    encoder directory without the marker is a training cut short (never resumed: new name)."""
    complete = [e for e in _encoder_dirs(workdir) if (workdir / ENCODERS / e / TRAINED).is_file()]
    return set(complete[-keep:]) | (used & set(_encoder_dirs(workdir)))


def _encoder_hash(directory: Path) -> str | None:
    try:
        return json.loads((directory / "encoder.json").read_text(encoding="utf-8"))["encoder_hash"]
    except (OSError, ValueError, KeyError):
        return None


def _entries(directory: Path) -> list[str]:
    """Sub-directory names, sorted (files beside them are not entries of these caches)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.is_symlink())


def _size(path: Path) -> int:
    """Bytes under a path (links not followed)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size if path.exists() or path.is_symlink() else 0
    total = 0
    for parent, _, names in os.walk(path):
        total += sum(os.lstat(os.path.join(parent, n)).st_size for n in names)
    return total
