"""Pipeline: which run a nightly is — its key from the data, config and code (plus an attempt id
when forced), recorded in runs/<key>/run.json — and the newest finished run of the same inputs,
which makes a rerun say "nothing new". Reads runs/*/run.json and step manifests; writes nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recsys import __version__
from recsys.config import PipelineConfig, config_hash
from recsys.pipeline.fingerprint import data_fingerprint, run_key
from recsys.steps import RUN_FILE, StepRunner

RUNS = "runs"


@dataclass(frozen=True)
class RunIdentity:
    """What a run is keyed on. `base_key` is the key of these inputs without --force; a forced
    run has an `attempt` id and a key of its own, so nothing of an earlier run is resumed."""

    key: str
    base_key: str
    data_hash: str
    config_hash: str
    code_version: str
    attempt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinishedRun:
    key: str
    version: str  # the bundle it published


def identify(data_dir: Path, config: PipelineConfig, force: bool = False) -> RunIdentity:
    """The run these inputs make (a new attempt when forced). Reads every data file once."""
    data_hash = data_fingerprint(Path(data_dir))
    base = run_key(data_hash, config)
    attempt = new_attempt() if force else None
    key = run_key(data_hash, config, attempt) if attempt else base
    return RunIdentity(key, base, data_hash, config_hash(config), __version__, attempt)


def new_attempt() -> str:
    """forced-<UTC time>-<4 hex>: sortable, unique per --force."""
    return f"forced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.urandom(2).hex()}"


def run_dir(workdir: Path, key: str) -> Path:
    return Path(workdir) / RUNS / key


def finished_run(workdir: Path, base_key: str, last_step: str) -> FinishedRun | None:
    """The newest run of these inputs that finished (the run itself or a forced rerun of it),
    with the bundle it published; None when none did."""
    candidates = [base_key] + [
        marker.parent.name
        for marker in sorted((Path(workdir) / RUNS).glob(f"*/{RUN_FILE}"))
        if _forced_rerun_of(marker, base_key)
    ]
    best: tuple[float, FinishedRun] | None = None
    for key in candidates:
        runner = StepRunner(run_dir(workdir, key))
        last, publish = runner.done(last_step), runner.done("publish")
        if last is None or publish is None:
            continue
        if best is None or last["finished_at"] > best[0]:
            best = (last["finished_at"], FinishedRun(key, publish["result"]["version"]))
    return None if best is None else best[1]


def _forced_rerun_of(marker: Path, base_key: str) -> bool:
    try:
        identity = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # unreadable: not one this code wrote
    return identity.get("base_key") == base_key and bool(identity.get("attempt"))
