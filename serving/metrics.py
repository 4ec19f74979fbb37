"""Serving stage: Prometheus metrics of the API (latency per route and variant, answers by
cold-start path and precomputed/live, bundle info and age, swaps, load failures, variant
fallbacks, side-channel failures, build info, live overlay size, events ingested, event-to-visible
time), exposed at /metrics in the text format.

Several gunicorn workers: each worker is a process with its own counters. When the environment
variable PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is first imported (the checked-in
gunicorn config does it in the master, so every worker inherits it), values live in per-process
files in that directory and /metrics, whichever worker answers, merges them: counters and
histograms are summed over workers (dead workers' totals included), the bundle-info gauge is the max
over live workers (a version shows 1 while any worker serves it). Without the variable (tests, a
single process) the app's own registry is exposed.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; dense below 100 ms where a healthy ranking call lands.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metric objects of one app; `exposition()` renders them (merged over workers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # see child()
        reg = self.registry
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Request latency by route template and A/B variant ('none' outside /v1)",
            ["route", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.requests = Counter(
            "recsys_http_requests",
            "Requests by route template, A/B variant and status code",
            ["route", "variant", "status"],
            registry=reg,
        )
        self.rank_time = Histogram(
            "recsys_rank_duration_seconds",
            "Time inside the model (recommend/similar), by variant",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.bundle_info = Gauge(
            "recsys_bundle_info",
            "1 for the bundle version a variant serves, 0 for one it no longer serves",
            ["variant", "version"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.answers = Counter(
            "recsys_recommendations",
            "Recommendation answers by variant, cold-start path (known, history, profile, "
            "popularity) and how they were ranked (precomputed at publish, or live)",
            ["variant", "path", "ranked"],
            registry=reg,
        )
        self.swaps = Counter(
            "recsys_bundle_swaps", "Bundles swapped in, by variant", ["variant"], registry=reg
        )
        self.load_failures = Counter(
            "recsys_bundle_load_failures",
            "Bundles refused (verification or loading failed), by variant",
            ["variant"],
            registry=reg,
        )

        self.fallbacks = Counter(
            "recsys_variant_fallbacks",
            "Requests assigned to a variant that is not loaded, answered by control instead",
            ["variant"],
            registry=reg,
        )
        self.side_channel_failures = Counter(
            "recsys_side_channel_failures",
            "Writes to a side channel (the exposure log) that failed; the answer was still served",
            ["channel"],
            registry=reg,
        )

        self.live_events = Counter(
            "recsys_live_events_ingested",
            "User events stored by POST /v1/events",
            registry=reg,
        )
        self.live_visible = Histogram(
            "recsys_live_event_visible_seconds",
            "From an event's (or overlay change's) commit to a worker applying it",
            ["kind"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0),
            registry=reg,
        )
        self.live_size = Gauge(
            "recsys_live_overlay_size",
            "Live store rows a worker applies: overlay items, hidden items, pending events",
            ["kind"],
            registry=reg,
            multiprocess_mode="livemax",
        )

    def child(self, metric: Any, *values: str) -> Any:
        """metric.labels(*values) (positional, in the metric's label order), looked up once:
        labels() checks its arguments and takes a lock on every call, and every request
        observes four of them."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:  # a race makes the same child twice: labels() returns the same one
            found = self._children[key] = metric.labels(*values)
        return found

    def serving(self, variant: str, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.bundle_info.labels(variant=variant, version=previous).set(0)
        self.bundle_info.labels(variant=variant, version=version).set(1)

    def exposition(self, served: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text format; `served` (variant -> a model with
        a manifest) adds the bundle-age gauges, computed by the answering worker at scrape time."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        body = generate_latest(registry) + generate_latest(_ScrapeTime(served or {}))
        return body, CONTENT_TYPE_LATEST


class _ScrapeTime(CollectorRegistry):
    """Values read when /metrics is scraped: build info and each variant's bundle age (the
    standard alert for a failed nightly: time since the bundle served was created)."""

    def __init__(self, served: Mapping[str, Any]):
        super().__init__(auto_describe=False)
        self.served = served

    def collect(self):
        info = GaugeMetricFamily(
            "recsys_build_info", "Versions of this server's code and libraries (value 1)",
            labels=["version", "python", "torch", "faiss"],
        )  # fmt: skip
        info.add_metric(_build_labels(), 1.0)
        yield info
        age = GaugeMetricFamily(
            "recsys_bundle_age_seconds",
            "Seconds since the served bundle was created (alert when over ~1.5 nightly periods)",
            labels=["variant", "version"],
        )
        created = GaugeMetricFamily(
            "recsys_bundle_created_timestamp_seconds",
            "Creation time of the served bundle (Unix seconds)",
            labels=["variant", "version"],
        )
        now = time.time()
        for variant, model in sorted(self.served.items()):
            stamp = _created(model)
            if stamp is not None:
                age.add_metric([variant, model.version], max(0.0, now - stamp))
                created.add_metric([variant, model.version], stamp)
        yield age
        yield created


def _created(model: Any) -> float | None:
    raw = getattr(model, "manifest", {}).get("created_at")
    try:
        return datetime.fromisoformat(raw).timestamp() if raw else None
    except (TypeError, ValueError):
        return None


@functools.cache
def _build_labels() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    from recsys import __version__

    return [__version__, platform.python_version(), of("torch"), of("faiss-cpu") or of("faiss")]
