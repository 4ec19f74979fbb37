"""Pipeline plumbing: a work-directory lock and resumable steps with small step manifests.

A step's manifest (steps/<name>.json) is written atomically after the step's outputs, so a rerun
after a crash resumes at the first step without one. Outputs live in the step's own directory;
run.json beside steps/ says what the run was keyed on.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.bundle import atomic_write_text
from recsys.errors import UserError

CRASH_ENV = "RECSYS_TEST_CRASH_AFTER"  # test hook: SIGKILL self after this step's manifest
STEPS_DIR = "steps"  # a run's step manifests: steps/<name>.json
RUN_FILE = "run.json"  # a run's identity (what it was keyed on), beside steps/


class LockedError(UserError, RuntimeError):
    """Another run holds the work directory."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class WorkdirLock:
    """An exclusive, non-blocking flock on <workdir>/nightly.lock (released if the process dies)."""

    def __init__(self, workdir: Path, name: str = "nightly.lock"):
        self.path = Path(workdir) / name
        self._fh = None

    def __enter__(self) -> WorkdirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise LockedError(
                f"{self.path}: another run holds this work directory ({holder}); "
                "wait for it or use another --workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def lock_holder(workdir: Path, name: str = "nightly.lock") -> str | None:
    """Who holds the work-directory lock ("pid N since T"), or None — without taking it or
    writing anything (dry runs): a shared flock on the existing file, released at once."""
    path = Path(workdir) / name
    try:
        fh = open(path)
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "unknown"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@dataclass
class StepRecord:
    name: str
    resumed: bool
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)


class StepRunner:
    """Runs named steps in order under run_dir; a step with a manifest is skipped (resumed).
    Nothing is written before the first step runs (a dry run reads the manifests only)."""

    def __init__(self, run_dir: Path, progress: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.progress = progress or (lambda message: None)
        self.records: list[StepRecord] = []
        self._started = time.monotonic()

    def output_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def manifest_path(self, name: str) -> Path:
        return self.run_dir / STEPS_DIR / f"{name}.json"

    def identity(self) -> dict[str, Any] | None:
        """What the run was keyed on (RUN_FILE), None for a run that has not started."""
        path = self.run_dir / RUN_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def record_identity(self, identity: dict[str, Any]) -> None:
        """Write RUN_FILE when the run starts; a resumed run keeps its first one."""
        if self.identity() is None:
            (self.run_dir / STEPS_DIR).mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / RUN_FILE, json.dumps(identity, indent=2))

    def done(self, name: str) -> dict[str, Any] | None:
        path = self.manifest_path(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def run(self, name: str, fn: Callable[[Path], dict[str, Any] | None]) -> dict[str, Any]:
        """fn(output_dir) -> JSON-able result, recorded in the step manifest and returned."""
        previous = self.done(name)
        index = len(self.records) + 1
        if previous is not None:
            self.records.append(StepRecord(name, True, 0.0, previous["result"]))
            self.progress(f"[{index}] {name}: done in an earlier run, reused")
            return previous["result"]
        self.progress(f"[{index}] {name} ... (elapsed {time.monotonic() - self._started:.0f}s)")
        start = time.monotonic()
        result = fn(self.output_dir(name)) or {}
        seconds = time.monotonic() - start
        record = {"step": name, "seconds": round(seconds, 3), "finished_at": time.time()}
        self.manifest_path(name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path(name), json.dumps({**record, "result": result}))
        self.records.append(StepRecord(name, False, seconds, result))
        self.progress(f"[{index}] {name}: {seconds:.1f}s")
        if os.environ.get(CRASH_ENV) == name:  # crash-test hook, never set in production
            os.kill(os.getpid(), signal.SIGKILL)
        return result
