"""Serving stage: the health blueprint — liveness, readiness, Prometheus metrics, the OpenAPI
document (reads the holder and the metrics; writes nothing)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from recsys.serving.errors import error_response
from recsys.serving.openapi import build_openapi
from recsys.serving.state import state

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; says nothing about bundles."""
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> Response:
    """200 once the control variant serves a verified, warmed-up bundle; 503 before, saying why.
    The body names what this worker serves, every variant that does not serve its target and
    why (its users go to control), and what each live worker of the server serves."""
    holder = state().holder
    snapshot = holder.snapshot
    if snapshot is None:
        why = "; ".join(f"{v}: {r['error']}" for v, r in holder.problems.items())
        return error_response(
            503,
            "not_ready",
            f"no verified bundle loaded yet for the control variant {holder.control}"
            + (f" ({why})" if why else " (loading)"),
        )
    workers = {str(pid): s.get("serving", {}) for pid, s in holder.fleet.workers().items()}
    return jsonify(
        status="ready", variants=snapshot.versions(), problems=holder.problems, workers=workers
    )


@health.get("/metrics")
def metrics() -> Response:
    snapshot = state().holder.snapshot
    served = {v: s.model for v, s in snapshot.served.items()} if snapshot is not None else {}
    body, content_type = state().metrics.exposition(served)
    return Response(body, status=200, content_type=content_type)


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi(state()))
