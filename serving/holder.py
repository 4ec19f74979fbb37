"""Serving stage: the bundle holder — reads bundles/<version>/ and the CURRENT/CHALLENGER pointers
of a work directory, verifies and loads a model per A/B variant, and swaps them atomically.

Every request reads `holder.snapshot` once and uses that object to the end, so a swap (one
reference assignment, built completely on the side first) never changes a model under a request
in flight; the old models are freed when their last request finishes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys import bundle as bundles
from serving.metrics import Metrics
from serving.served import ServedModel

log = logging.getLogger("recsys.serving")

Loader = Callable[[Path], Any]  # bundle directory -> ready model; raises on anything wrong


def load_verified(bundle_dir: Path) -> Any:
    """Verify (format version, sha256 of every file, none missing or extra), load, warm up."""
    from recsys.ranking.model import RecommenderModel  # torch/FAISS load here, in the worker

    model = RecommenderModel.load(bundle_dir)  # verifies before reading anything
    model.warm_up()
    model.recommend(profile_text="warm up", k=1)  # the text tower loads lazily: not on a request
    return model


@dataclass(frozen=True)
class Served:
    version: str
    model: ServedModel  # recsys.ranking.model.RecommenderModel


@dataclass(frozen=True)
class Snapshot:
    """What every variant serves at one moment; never mutated, only replaced."""

    served: Mapping[str, Served]  # variant -> Served

    def versions(self) -> dict[str, str]:
        return {variant: s.version for variant, s in self.served.items()}


class BundleHolder:
    """Loads one model per variant; `reload` swaps in what the pointers name now."""

    def __init__(
        self,
        workdir: str | Path,
        variants: Sequence[str],
        metrics: Metrics,
        *,
        poll_seconds: float = 5.0,
        loader: Loader = load_verified,
    ):
        self.workdir = Path(workdir)
        self.variants = list(variants)
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.loader = loader
        self.snapshot: Snapshot | None = None  # None until every variant has a verified bundle
        self._reload_lock = threading.Lock()  # one load at a time: watcher vs /admin/reload
        self._start_lock = threading.Lock()
        self._refused: dict[str, str] = {}  # variant -> version refused; the watcher skips it
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    def target(self, variant: str) -> str | None:
        """The version a variant should serve now: a pointer's content, or the version itself."""
        if variant in bundles.POINTERS:
            return bundles.read_pointer(self.workdir, variant)
        return variant

    def reload(self, force: bool = True) -> dict[str, dict[str, str | None]]:
        """Load what changed, then swap once. force=False (the watcher) skips refused versions."""
        with self._reload_lock:
            old = self.snapshot.served if self.snapshot else {}
            new = dict(old)
            by_version = {s.version: s for s in old.values()}  # a version is loaded once
            report: dict[str, dict[str, str | None]] = {}
            for variant in self.variants:
                version = self.target(variant)
                if version is None:
                    report[variant] = _entry(None, "failed", f"pointer {variant} is not set")
                elif variant in old and old[variant].version == version:
                    report[variant] = _entry(version, "unchanged")
                elif not force and self._refused.get(variant) == version:
                    report[variant] = _entry(version, "failed", "refused before; not retried")
                else:
                    served, error = by_version.get(version), None
                    if served is None:
                        served, error = self._load(variant, version)
                    if served is None:
                        report[variant] = _entry(version, "failed", error)
                        continue
                    by_version[version] = new[variant] = served
                    report[variant] = _entry(version, "loaded")
            if len(new) == len(self.variants) and new != old:
                self.snapshot = Snapshot(served=new)  # the swap: one reference assignment
                for variant, served in new.items():
                    previous = old[variant].version if variant in old else None
                    if previous != served.version:
                        self.metrics.serving(variant, served.version, previous)
                        self.metrics.swaps.labels(variant=variant).inc()
                        log.info("variant %s now serves bundle %s", variant, served.version)
            return report

    def _load(self, variant: str, version: str) -> tuple[Served | None, str | None]:
        path = bundles.bundles_dir(self.workdir) / version
        try:
            model = self.loader(path)
        except Exception as exc:  # any broken bundle is refused; the old one keeps serving
            self._refused[variant] = version
            self.metrics.load_failures.labels(variant=variant).inc()
            log.error("refused bundle %s for variant %s: %s", version, variant, exc)
            return None, f"{type(exc).__name__}: {exc}"
        self._refused.pop(variant, None)
        return Served(version=version, model=model), None

    def rollback(self) -> tuple[str, dict[str, dict[str, str | None]]]:
        """CURRENT back to the previous champion (verified first), then reload."""
        target = bundles.rollback(self.workdir)
        return target, self.reload(force=True)

    def start(self, *, load_now: bool = False, watch: bool = True) -> None:
        """Load now in the caller's thread (load_now) and/or watch the pointers in a background
        thread polling every poll_seconds (watch; it also does the first load if not done).

        Idempotent per process; called in each gunicorn worker after the fork, because FAISS and
        torch thread pools do not survive a fork.
        """
        if self._pid == os.getpid():  # fast path on every request: started in this process
            return
        with self._start_lock:
            if self._pid == os.getpid():  # another thread got here first
                return
            self._pid = os.getpid()
            self._stop.clear()
            if load_now:
                self.reload(force=False)
            if watch:
                self._thread = threading.Thread(
                    target=self._watch, name="bundle-watch", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.reload(force=False)
            except Exception:  # the watcher must outlive any surprise; it is logged
                log.exception("bundle watcher: reload failed")
            if self.poll_seconds <= 0 and self.ready:
                return  # polling disabled: only the initial load (retried until it succeeds)
            self._stop.wait(self.poll_seconds if self.poll_seconds > 0 else 1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=10)
        self._thread = None


def _entry(version: str | None, status: str, error: str | None = None) -> dict[str, str | None]:
    return {"version": version, "status": status, "error": error}
