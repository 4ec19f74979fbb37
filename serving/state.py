"""Serving stage: the per-app state the views share (config, holder, router, metrics, models)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from recsys.config import ServingConfig
from serving.exposure import ExposureLog
from serving.holder import BundleHolder
from serving.metrics import Metrics
from serving.routing import VariantRouter
from serving.schemas import RequestModels


@dataclass
class ServingState:
    """Everything the views need, attached to the app as app.extensions["recsys"]."""

    config: ServingConfig
    holder: BundleHolder
    router: VariantRouter
    metrics: Metrics
    models: RequestModels
    exposure: ExposureLog | None
    admin_token: str | None
    bench_routes: bool
    registered_model: str | None = None  # [nightly] registered_model; None: derived (tracking)


def state() -> ServingState:
    """The state of the app handling the current request."""
    return current_app.extensions["recsys"]
