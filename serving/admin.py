"""Serving stage: the admin blueprint — reload and rollback behind a bearer token (reads
$RECSYS_ADMIN_TOKEN at app creation; moves the CURRENT pointer on rollback)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request

from recsys.bundle import BundleError
from serving.errors import ApiError
from serving.state import state

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.before_request
def _authorize() -> None:
    """No token configured: the admin routes do not exist (404). Otherwise a matching bearer."""
    token = state().admin_token
    if token is None:
        raise ApiError(404, "not_found", "admin routes are disabled: RECSYS_ADMIN_TOKEN is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        raise ApiError(
            401,
            "unauthorized",
            "expected header 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": 'Bearer realm="recsys-admin"'},
        )


@admin.post("/reload")
def reload() -> Response:
    """Load what the pointers name now (built on the side, swapped in one step)."""
    report = state().holder.reload(force=True)
    _refuse_on_failure(report)
    return jsonify(action="reload", variants=report, rolled_back_to=None)


@admin.post("/rollback")
def rollback() -> Response:
    """CURRENT back to the previous champion, then reload."""
    try:
        target, report = state().holder.rollback()
    except BundleError as exc:
        raise ApiError(409, "rollback_refused", str(exc)) from None
    _refuse_on_failure(report)
    return jsonify(action="rollback", variants=report, rolled_back_to=target)


def _refuse_on_failure(report: dict) -> None:
    failed = {v: r["error"] for v, r in report.items() if r["status"] == "failed"}
    if failed:
        served = state().holder.snapshot
        still = served.versions() if served else {}
        raise ApiError(
            409, "bundle_refused", f"refused: {failed}; still serving {still or 'nothing'}"
        )
