"""Serving stage: the bundle holder — reads bundles/<version>/ and the CURRENT/CHALLENGER pointers
of a work directory, verifies and loads a model per A/B variant, and swaps them atomically.

Every request reads `holder.snapshot` once and uses that object to the end, so a swap (one
reference assignment, built completely on the side first) never changes a model under a request
in flight; the old models are freed when their last request finishes.

The control variant (the first) must load for the API to be ready; any other variant that cannot
be loaded (a pinned version pruned, CHALLENGER not yet published) is left out and its users are
served by control, which /readyz reports. A refused bundle is retried when its files change.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys import bundle as bundles
from recsys.serving.fleet import Fleet, file_signature
from recsys.serving.metrics import Metrics
from recsys.serving.served import ServedModel

log = logging.getLogger("recsys.serving")

Loader = Callable[[Path], Any]  # bundle directory -> ready model; raises on anything wrong
Report = dict[str, dict[str, str | None]]  # variant -> {version, status, error}
CHECK_SECONDS = 0.02  # requests look at the pointers at most this often per worker (2 stats)


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
    """What every variant serves at one moment; never mutated, only replaced. `control` is
    always in `served`; a variant missing from it is served by control."""

    served: Mapping[str, Served]  # variant -> Served
    control: str

    def versions(self) -> dict[str, str]:
        return {variant: s.version for variant, s in self.served.items()}

    def route(self, variant: str) -> tuple[str, Served]:
        """(the variant that answers, its model): `variant`, or control when it is not loaded."""
        if variant in self.served:
            return variant, self.served[variant]
        return self.control, self.served[self.control]


class BundleHolder:
    """Loads one model per variant; `refresh` swaps in what the pointers name now."""

    def __init__(
        self,
        workdir: str | Path,
        variants: Sequence[str],
        metrics: Metrics,
        *,
        poll_seconds: float = 1.0,
        loader: Loader = load_verified,
        fleet: Fleet | None = None,
    ):
        self.workdir = Path(workdir)
        self.variants = list(variants)
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.loader = loader
        self.fleet = fleet or Fleet(None)
        self.snapshot: Snapshot | None = None  # None until control has a verified bundle
        self.problems: Report = {}  # variant -> why it does not serve its target (last reload)
        self._reload_lock = threading.RLock()  # one load at a time: watcher vs admin
        self._start_lock = threading.Lock()
        self._refused: dict[str, tuple[Any, str]] = {}  # version -> (files fingerprint, error)
        self._generation = -1  # the fleet generation this worker last acted on
        self._seen: tuple = ()  # signatures of the pointer and generation files at that time
        self._wake = threading.Event()
        self._checked = -math.inf  # when a request last looked at the signatures
        # plain strings: checked on every request, where pathlib's overhead would dominate a stat
        pointers = [v for v in self.variants if v in bundles.POINTERS]
        self._pointer_paths = [os.fspath(self.workdir / p) for p in pointers]
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    @property
    def control(self) -> str:
        return self.variants[0]

    def target(self, variant: str) -> str | None:
        """The version a variant should serve now: a pointer's content, or the version itself.
        Raises BundleError when a pointer cannot be read."""
        if variant in bundles.POINTERS:
            return bundles.read_pointer(self.workdir, variant)
        return variant

    def route(self, variant: str) -> tuple[str, Served] | None:
        """(answering variant, model) for a request assigned to `variant`; None when not ready."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        answered, served = snapshot.route(variant)
        if answered != variant:
            self.metrics.fallbacks.labels(variant=variant).inc()
        return answered, served

    # ---- noticing changes ----

    def _signatures(self) -> tuple:
        """(mtime_ns, inode) of the generation file and of each pointer a variant follows."""
        return (self.fleet.signature(), *map(file_signature, self._pointer_paths))

    def check(self) -> None:
        """Per request (at most every CHECK_SECONDS): a stat of the generation file and of the
        pointers; wake the watcher when one moved, rather than wait for its next poll."""
        now = time.monotonic()
        if self._thread is None or now - self._checked < CHECK_SECONDS:
            return
        self._checked = now
        if self._signatures() != self._seen:
            self._wake.set()

    def refresh(self, force: bool = False) -> Report:
        """Act on the fleet generation and the pointers as they are now, then report to the
        fleet. A raised generation (an admin action) retries refused bundles too."""
        with self._reload_lock:
            seen = self._signatures()  # before reading: a change after this is seen next time
            generation = self.fleet.generation()
            report = self.reload(force=force or generation != self._generation)
            self._generation, self._seen = generation, seen
            self._report(generation)
            return report

    def _report(self, generation: int) -> None:
        snapshot = self.snapshot
        self.fleet.report(
            {
                "generation": generation,
                "serving": snapshot.versions() if snapshot else {},
                "problems": self.problems,
            }
        )

    # ---- loading ----

    def reload(self, force: bool = True) -> Report:
        """Load what changed, then swap once. force=False (the watcher) skips a refused version
        whose files have not changed since."""
        with self._reload_lock:
            old = dict(self.snapshot.served) if self.snapshot else {}
            new = dict(old)
            by_version = {s.version: s for s in old.values()}  # a version is loaded once
            report: Report = {}
            for variant in self.variants:
                report[variant] = self._reload_variant(variant, old, new, by_version, force)
            problems = {v: r for v, r in report.items() if r["error"] is not None}
            for variant, entry in problems.items():
                if self.problems.get(variant) != entry:  # logged once, not at every poll
                    log.warning("variant %s does not serve its target: %s", variant, entry)
            self.problems = problems
            if self.control in new and new != old:
                self._swap(old, new)
            return report

    def _reload_variant(self, variant, old, new, by_version, force) -> dict[str, str | None]:
        try:
            version = self.target(variant)
        except bundles.BundleError as exc:
            return _entry(None, "failed", str(exc))
        if version is None:
            new.pop(variant, None)  # nothing to serve: its users go to control
            return _entry(None, "unavailable", f"pointer {variant} is not set")
        if variant in old and old[variant].version == version:
            return _entry(version, "unchanged")
        served, error = by_version.get(version), None
        path = bundles.bundle_path(self.workdir, version)
        if served is None and not (path / bundles.MANIFEST).is_file():
            where = bundles.bundles_dir(self.workdir)
            return _entry(version, "unavailable", f"bundle {version} is not published in {where}")
        if served is None:
            served, error = self._load(variant, version, force)
        if served is None:
            return _entry(version, "failed", error)
        by_version[version] = new[variant] = served
        return _entry(version, "loaded")

    def _swap(self, old: Mapping[str, Served], new: dict[str, Served]) -> None:
        self.snapshot = Snapshot(served=new, control=self.control)  # one reference assignment
        for variant, served in new.items():
            previous = old[variant].version if variant in old else None
            if previous != served.version:
                self.metrics.serving(variant, served.version, previous)
                self.metrics.swaps.labels(variant=variant).inc()
                log.info("variant %s now serves bundle %s", variant, served.version)

    def _load(self, variant: str, version: str, force: bool) -> tuple[Served | None, str | None]:
        path = bundles.bundle_path(self.workdir, version)
        fingerprint = _fingerprint(path)
        refused = self._refused.get(version)
        if not force and refused is not None and refused[0] == fingerprint:
            return None, f"refused before, files unchanged since: {refused[1]}"
        try:
            model = self.loader(path)
        except Exception as exc:  # any broken bundle is refused; the old one keeps serving
            error = f"{type(exc).__name__}: {exc}"
            self._refused[version] = (fingerprint, error)
            self.metrics.load_failures.labels(variant=variant).inc()
            log.error("refused bundle %s for variant %s: %s", version, variant, error)
            return None, error
        self._refused.pop(version, None)
        return Served(version=version, model=model), None

    def rollback(self) -> tuple[str, Report]:
        """CURRENT back to the previous champion (verified first), then reload this process."""
        target = bundles.rollback(self.workdir)
        return target, self.refresh(force=True)

    # ---- the watcher ----

    def start(self, *, load_now: bool = False, watch: bool = True) -> None:
        """Load now in the caller's thread (load_now) and/or watch in a background thread that
        refreshes every poll_seconds or when a request saw a change (watch; it also does the
        first load if not done). Idempotent per process; called in each gunicorn worker after
        the fork, because FAISS and torch thread pools do not survive a fork."""
        if self._pid == os.getpid():  # fast path on every request: started in this process
            return
        with self._start_lock:
            if self._pid == os.getpid():  # another thread got here first
                return
            self._pid = os.getpid()
            self._stop.clear()
            self._report(-1)  # known to the fleet before the first load: admin waits for it
            if load_now:
                self.refresh()
            if watch:
                self._thread = threading.Thread(
                    target=self._watch, name="bundle-watch", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any surprise; it is logged
                log.exception("bundle watcher: reload failed")
            if self.poll_seconds <= 0 and self.ready:
                self._thread = None
                return  # polling disabled: only the initial load (retried until it succeeds)
            self._wake.wait(self.poll_seconds if self.poll_seconds > 0 else 1.0)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=10)
        self._thread = None


def _fingerprint(path: Path) -> tuple:
    """(name, size, mtime_ns, inode) of every entry: a repaired bundle looks different."""
    out = []
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs + files):
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            out.append((os.path.join(root, name), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def _entry(version: str | None, status: str, error: str | None = None) -> dict[str, str | None]:
    return {"version": version, "status": status, "error": error}
