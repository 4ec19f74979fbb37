"""Bundle stage: the promotion history of CURRENT and the champion stack it implies (reads and
appends <workdir>/promotions.jsonl, locks <workdir>/pointers.lock; rollback walks back through the
stack).

Each line records one change of CURRENT: {"at", "version", "previous", "reason"}. Replaying the
lines gives the champions in order: a promotion pushes its version; a rollback to a version on the
stack pops everything above it (so A -> B -> C -> D rolls back to C, then B, then A); a rollback to
a version not on the stack pushes it, like a promotion.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HISTORY = "promotions.jsonl"
ROLLBACK = "rollback"  # the reason recorded by a rollback

log = logging.getLogger(__name__)


def history_path(workdir: Path) -> Path:
    return Path(workdir) / HISTORY


def read_records(workdir: Path) -> list[dict[str, Any]]:
    """The history's records, oldest first. A line that is not a JSON object (a write torn by a
    crash, a hand edit) is skipped with a warning: the history guides rollback, it must not stop
    every command that reads it."""
    path = history_path(workdir)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("version"), str):
            log.warning("%s: line %d is not a promotion record; skipped", path, number)
            continue
        records.append(record)
    return records


def append(workdir: Path, version: str, previous: str | None, reason: str) -> None:
    """Append one record (a single O_APPEND write, fsynced)."""
    record = {"at": time.time(), "version": version, "previous": previous, "reason": reason}
    line = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(history_path(workdir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def pointer_lock(workdir: Path) -> Iterator[None]:
    """Exclusive while a pointer changes: a rollback's read of the history and its write are one
    step against a concurrent rollback (CLI and API) or a nightly's promotion."""
    path = Path(workdir) / "pointers.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def champions(records: list[dict[str, Any]], current: str | None) -> list[str]:
    """The champion stack, oldest first; `current` (what CURRENT names now) is its top even when
    CURRENT was changed by hand, outside the history."""
    stack: list[str] = []
    for record in records:
        version, previous = record["version"], record.get("previous")
        if not stack and isinstance(previous, str) and previous != version:
            stack.append(previous)  # CURRENT named a bundle before the history began
        if record.get("reason") == ROLLBACK and version in stack:
            del stack[_last_index(stack, version) + 1 :]
        elif not stack or stack[-1] != version:
            stack.append(version)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)
    return stack


def rollback_target(stack: list[str], current: str | None, exists) -> tuple[str | None, list[str]]:
    """(the newest champion below the top that still exists, the pruned ones skipped on the way).

    `exists(version) -> bool` says whether a bundle is still published."""
    below = stack[:-1] if stack and stack[-1] == current else stack
    skipped = []
    for version in reversed(below):
        if version == current:
            continue
        if exists(version):
            return version, skipped
        skipped.append(version)
    return None, skipped


def _last_index(stack: list[str], version: str) -> int:
    return len(stack) - 1 - stack[::-1].index(version)
