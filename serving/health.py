"""Serving stage: the health blueprint — liveness, readiness, Prometheus metrics, the OpenAPI
document (reads the holder and the metrics; writes nothing)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.errors import error_response
from serving.openapi import build_openapi
from serving.state import state

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; says nothing about bundles."""
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> Response:
    """200 once every variant serves a verified, warmed-up bundle; 503 before."""
    snapshot = state().holder.snapshot
    if snapshot is None:
        holder = state().holder
        targets = {v: holder.target(v) for v in holder.variants}
        return error_response(
            503, "not_ready", f"no verified bundle loaded yet for every variant (targets {targets})"
        )
    return jsonify(status="ready", variants=snapshot.versions())


@health.get("/metrics")
def metrics() -> Response:
    snapshot = state().holder.snapshot
    served = {v: s.model for v, s in snapshot.served.items()} if snapshot is not None else {}
    body, content_type = state().metrics.exposition(served)
    return Response(body, status=200, content_type=content_type)


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi(state()))
