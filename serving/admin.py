"""Serving stage: the admin blueprint — reload and rollback behind a bearer token (reads
$RECSYS_ADMIN_TOKEN at app creation; moves the CURRENT pointer on rollback, and the MLflow
`champion` alias after it, see serving/registry.py; raises the server's generation and waits for
every worker, see serving/fleet.py).

Both answer only once every live worker of the server reports the new state: a request sent
after a 200 is served by the new bundle whichever worker takes it. 409 when nothing was done
(rollback with nothing to go back to, CURRENT already there) or a bundle was refused (the old one
keeps serving); 503 when a worker did not confirm within [serving] switch_timeout_seconds.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from recsys import bundle as bundles
from recsys.serving.auth import require_bearer
from recsys.serving.errors import ApiError
from recsys.serving.registry import follow_rollback
from recsys.serving.state import state

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.before_request
def _authorize() -> None:
    """No token configured: the admin routes do not exist (404). Otherwise a matching bearer."""
    disabled = "admin routes are disabled: RECSYS_ADMIN_TOKEN is not set"
    require_bearer(state().admin_token, disabled, "admin token", "recsys-admin")


@admin.post("/reload")
def reload() -> Response:
    """Every worker loads what the pointers name now (built on the side, swapped in one step)."""
    return _switch("reload")


@admin.post("/rollback")
def rollback() -> Response:
    """CURRENT back to the champion before the present one, then every worker reloads."""
    return _switch("rollback")


def _switch(action: str) -> Response:
    st = state()
    holder, fleet = st.holder, st.holder.fleet
    started = time.monotonic()
    with fleet.admin_lock():
        target, registry = None, None
        if action == "rollback":
            try:
                previous = bundles.read_pointer(holder.workdir)
                target = bundles.rollback(holder.workdir)
            except bundles.BundleError as exc:
                raise ApiError(409, "rollback_refused", str(exc)) from None
        generation = fleet.bump()
        report = holder.refresh(force=True)
        workers, behind = fleet.wait_for(generation, st.config.switch_timeout_seconds)
    if target is not None:  # CURRENT has moved: the alias follows whatever the workers did
        reason = f"rollback (POST /admin/rollback) from {previous} to {target}"
        registry = follow_rollback(holder.workdir, st.registered_model, target, reason)
    if behind:
        raise ApiError(
            503,
            "switch_incomplete",
            f"{len(behind)} of {len(workers)} workers (pids {behind}) did not confirm "
            f"generation {generation} within {st.config.switch_timeout_seconds:g} s; "
            "they keep trying, see /readyz",
        )
    _refuse_on_failure(report)
    _require_agreement(workers)
    return jsonify(
        action=action,
        variants=report,
        rolled_back_to=target,
        registry=registry,
        workers=len(workers),
        seconds=round(time.monotonic() - started, 3),
    )


def _refuse_on_failure(report: dict) -> None:
    """409 when a bundle was refused, or when the control variant has nothing to serve."""
    control = state().holder.control
    failed = {
        v: r["error"]
        for v, r in report.items()
        if r["status"] == "failed" or (v == control and r["status"] == "unavailable")
    }
    if failed:
        served = state().holder.snapshot
        still = served.versions() if served else {}
        raise ApiError(
            409, "bundle_refused", f"refused: {failed}; still serving {still or 'nothing'}"
        )


def _require_agreement(workers: dict[int, dict]) -> None:
    """Every worker serves what this one does (they all read the same pointers)."""
    snapshot = state().holder.snapshot
    mine = snapshot.versions() if snapshot else {}
    differ = {pid: s.get("serving") for pid, s in workers.items() if s.get("serving") != mine}
    if differ:
        raise ApiError(
            409, "workers_disagree", f"this worker serves {mine}; other workers serve {differ}"
        )
