"""Serving stage: the per-app state the views share (config, holder, router, metrics, models)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from recsys.config import LiveConfig, ServingConfig, TextConfig
from recsys.live_store import Store
from recsys.serving.exposure import ExposureLog
from recsys.serving.holder import BundleHolder
from recsys.serving.live_view import LiveView
from recsys.serving.metrics import Metrics
from recsys.serving.routing import VariantRouter
from recsys.serving.schemas import RequestModels


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
    live: LiveConfig = LiveConfig()
    text: TextConfig = TextConfig()  # how overlay items' documents are written (as the nightly)
    live_store: Store | None = None
    live_view: LiveView | None = None
    live_token: str | None = None  # $[live] token_env; None: the live write routes are disabled


def state() -> ServingState:
    """The state of the app handling the current request."""
    return current_app.extensions["recsys"]
