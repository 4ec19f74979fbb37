"""Serving stage: the exposure log — one JSON line per recommendation list shown (writes one file
per process beside ServingConfig.exposure_log; `recsys ab-report` reads them all)."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("recsys.serving")


def process_path(path: str | Path) -> Path:
    """This process's file for a configured log path: exposure.jsonl -> exposure.<host>.<pid>.jsonl.

    One file per process and host (a pod's hostname is its name), so replicas on a shared volume
    never write the same file; `recsys ab-report --exposures exposure.jsonl` reads them all.
    A special file (a character device or FIFO, e.g. /dev/stdout) is written as it is."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        return path
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()) or "host"
    return path.with_name(f"{path.stem}.{host}.{os.getpid()}{path.suffix}")


class ExposureLog:
    """Appends {"time", "user_id", "variant", "bundle", "item_ids", "scores", "positions"} lines.

    Each process writes its own file (process_path); its threads share it: each line is written
    with a single os.write on an O_APPEND descriptor under an exclusive flock, so lines never
    interleave. The file is opened lazily, and again (a new file) after a fork.
    """

    def __init__(self, path: str | Path, on_failure: Callable[[Exception], None] | None = None):
        self.path = Path(path)
        self._fd: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        # A side channel fails alone: write() never raises; each failure is passed here (the
        # app counts it) and logged, the first at once and then at most once a minute.
        self._on_failure = on_failure or (lambda exc: None)
        self._failures = 0
        self._logged_at = -math.inf

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                process_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            self._pid = os.getpid()
        return self._fd

    def write(
        self,
        *,
        user_id: str | None,
        variant: str,
        bundle: str,
        item_ids: Sequence[str],
        scores: Sequence[float],
    ) -> None:
        record = {
            "time": time.time(),
            "user_id": user_id,
            "variant": variant,
            "bundle": bundle,
            "item_ids": list(item_ids),
            "scores": [float(s) for s in scores],
            "positions": list(range(1, len(item_ids) + 1)),
        }
        try:
            line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
            with self._lock:
                fd = self._descriptor()
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    os.write(fd, line)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except Exception as exc:  # disk full, permissions, a bad value: never the answer's problem
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self._on_failure(exc)
        now = time.monotonic()
        if now - self._logged_at >= 60.0:
            self._logged_at = now
            log.error(
                "exposure log %s: write failed (%s: %s); %d failure(s) so far; answers served",
                self.path,
                type(exc).__name__,
                exc,
                self._failures,
            )

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
