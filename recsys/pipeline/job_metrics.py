"""Pipeline: the nightly job's own metrics in the Prometheus textfile format (for node_exporter's
textfile collector): last run and last success times, step durations, gate decision. Writes one
.prom file atomically; a failed run keeps the last success time of the file it replaces."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

LAST_SUCCESS = "recsys_nightly_last_success_timestamp_seconds"


def write_nightly_metrics(
    path: Path,
    workdir: Path,
    *,
    success: bool,
    steps: Sequence[dict[str, Any]] = (),
    promoted: bool | None = None,
    published: bool | None = None,
    now: float | None = None,
) -> None:
    """Replace `path` with this run's metrics, labelled by work directory."""
    now = time.time() if now is None else now
    label = str(Path(workdir).resolve())
    previous = last_success(path, label)
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, **labels: str) -> None:
        metric = Gauge(name, doc, ["workdir", *labels], registry=registry)
        metric.labels(workdir=label, **labels).set(value)

    gauge("recsys_nightly_last_run_timestamp_seconds", "When the last nightly run ended", now)
    gauge("recsys_nightly_last_run_success", "1 if the last nightly run succeeded, else 0", success)
    last = now if success else previous
    if last is not None:
        gauge(LAST_SUCCESS, "When a nightly run last succeeded (alert when too old)", last)
    if promoted is not None:
        gauge(
            "recsys_nightly_gate_promoted", "1 if the last run's bundle became champion", promoted
        )
    if published is not None:
        gauge("recsys_nightly_published", "1 if the last run published a new bundle", published)
    durations = Gauge(
        "recsys_nightly_step_duration_seconds",
        "Seconds each step of the last run took (0 when resumed from an earlier run)",
        ["workdir", "step"],
        registry=registry,
    )
    for step in steps:
        durations.labels(workdir=label, step=step["step"]).set(step["seconds"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)  # tmp file + rename


def last_success(path: Path, workdir_label: str) -> float | None:
    """The last success time recorded in an existing file, or None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:  # a damaged file: start over
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.labels.get("workdir") == workdir_label:
                return sample.value
    return None
