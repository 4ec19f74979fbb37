"""Serving stage: after POST /admin/rollback, the MLflow `champion` alias follows CURRENT (reads the
work directory's MLflow store or $MLFLOW_TRACKING_URI; writes the alias and the reason tags).

mlflow is imported only here, lazily, only when it is installed: an API-only install has none, and
the rollback then says in its answer (and a logged warning) that the alias was left alone. A slow
tracking server never holds the answer longer than WAIT_SECONDS: the move goes on in the
background and its outcome is logged. Never raises: CURRENT has already moved, and a rollback the
client retried because of a registry error would go back one champion further.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from recsys import tracking

WAIT_SECONDS = 15.0
log = logging.getLogger(__name__)


def follow_rollback(
    workdir: Path, configured_name: str | None, version: str, reason: str
) -> dict[str, Any]:
    """Point `champion` at the registry version of bundle `version`; report what was done."""
    name = tracking.registered_model_name(workdir, configured_name)
    report: dict[str, Any] = {
        "registered_model": name,
        "alias": tracking.CHAMPION,
        "moved": False,
        "version": None,
    }
    off = tracking.registry_off(workdir)
    if off is not None:
        log.warning("rollback to %s: MLflow alias %s@champion not moved: %s", version, name, off)
        return {**report, "detail": off}
    done = threading.Event()

    def move() -> None:
        try:
            moved = tracking.set_alias(name, tracking.CHAMPION, version, reason, workdir)
        except Exception as exc:  # noqa: BLE001 - reported, never raised (see the docstring)
            report["detail"] = f"not moved: {type(exc).__name__}: {exc}"
            log.warning("rollback to %s: MLflow alias %s@champion %s", version, name, exc)
        else:
            report.update(moved=True, version=moved, detail=f"{name}@champion -> version {moved}")
            log.info("rollback to %s: %s", version, report["detail"])
        done.set()

    threading.Thread(target=move, name="registry-alias", daemon=True).start()
    if not done.wait(WAIT_SECONDS):
        wait = f"MLflow did not answer within {WAIT_SECONDS:g} s; still trying (see the log)"
        return {**report, "detail": wait}
    return dict(report)
