"""Serving stage: the workers of one gunicorn server agree on what they serve (reads and writes the
server directory $RECSYS_SERVER_DIR, made by the master in serving/gunicorn_conf.py).

    generation          a counter /admin/reload and /admin/rollback raise; every worker checks it
                        (a stat) on each request and each poll, and reloads when it moves
    workers/<pid>.json  each live worker's report: the generation it has acted on, what it serves
    admin.lock          one reload or rollback at a time, whichever worker receives it

An admin action raises the generation, acts in its own worker, then waits until every live worker
reports that generation: only then does it answer, so a request sent after the answer is served by
the new bundle whichever worker takes it. Without a server directory (one process: tests, the
Flask test client) the fleet is this process alone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVER_DIR_ENV = "RECSYS_SERVER_DIR"
GENERATION = "generation"
WORKERS = "workers"


class Fleet:
    """This worker's view of its server's workers (or of itself alone when `directory` is None)."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None
        self._generation_path = os.fspath(self.directory / GENERATION) if directory else ""
        self._generation = 0  # alone: the generation lives here
        self._own: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Fleet:
        return cls(os.environ.get(SERVER_DIR_ENV) or None)

    # ---- the generation counter ----

    def generation(self) -> int:
        if self.directory is None:
            return self._generation
        try:
            return int((self.directory / GENERATION).read_text(encoding="ascii") or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def signature(self) -> tuple[int, int] | None:
        """(mtime_ns, inode) of the generation file: changes whenever it is raised."""
        if self.directory is None:
            return (self._generation, 0)
        return file_signature(self._generation_path)

    def bump(self) -> int:
        """Raise the generation by one (call under admin_lock); returns the new value."""
        new = self.generation() + 1
        if self.directory is None:
            self._generation = new
        else:
            _write_atomic(self.directory / GENERATION, str(new))
        return new

    @contextmanager
    def admin_lock(self) -> Iterator[None]:
        """One admin action at a time across the server's workers."""
        if self.directory is None:
            with self._lock:
                yield
            return
        with open(self.directory / "admin.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- worker reports ----

    def report(self, state: dict[str, Any]) -> None:
        """Publish this worker's state (atomically: readers never see half a file); unchanged
        states are not rewritten (the watcher reports after every poll)."""
        state = {"pid": os.getpid(), "ppid": os.getppid(), **state}
        if state == {k: v for k, v in self._own.items() if k != "at"}:
            return
        state["at"] = time.time()
        self._own = state
        if self.directory is not None:
            path = self.directory / WORKERS / f"{os.getpid()}.json"
            _write_atomic(path, json.dumps(state))

    def forget(self, pid: int) -> None:
        """A worker has exited (the master's child_exit): drop its report."""
        if self.directory is not None:
            (self.directory / WORKERS / f"{pid}.json").unlink(missing_ok=True)

    def workers(self) -> dict[int, dict[str, Any]]:
        """pid -> report of every live worker of this server (reports of dead ones removed)."""
        if self.directory is None:
            return {os.getpid(): self._own} if self._own else {}
        out = {}
        for path in sorted((self.directory / WORKERS).glob("*.json")):
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # removed, or replaced under us: the next look sees it
            pid = int(state.get("pid", 0))
            if not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            out[pid] = state
        return out

    def wait_for(self, generation: int, timeout: float) -> tuple[dict[int, dict], list[int]]:
        """Wait until every live worker reports `generation` (or later): (reports, laggards)."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.workers()
            behind = [pid for pid, s in states.items() if s.get("generation", -1) < generation]
            if not behind or time.monotonic() >= deadline:
                return states, behind
            time.sleep(0.02)


def file_signature(path: str) -> tuple[int, int] | None:
    """(mtime_ns, inode) of a file, None when absent: a pointer replaced by rename changes both."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def prepare(directory: Path) -> None:
    """The master, before any worker: a fresh server directory."""
    (directory / WORKERS).mkdir(parents=True, exist_ok=True)
    for stale in (directory / WORKERS).glob("*"):
        stale.unlink()
    _write_atomic(directory / GENERATION, "0")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
