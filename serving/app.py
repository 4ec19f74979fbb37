"""Serving stage: the Flask application factory (reads a work directory's bundles through the
holder; writes the exposure log and, on the live routes, the live store). Blueprints: api (/v1),
live (/v1 writes: items, events), health (/healthz, /readyz, /metrics, /openapi.json), admin."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask, Response, g, jsonify, request

from recsys.config import LiveConfig, PipelineConfig, ServingConfig, TextConfig, load_config
from recsys.live_store import open_store
from recsys.serving import errors, logs
from recsys.serving.admin import admin
from recsys.serving.api import api
from recsys.serving.exposure import ExposureLog
from recsys.serving.fleet import Fleet
from recsys.serving.health import health
from recsys.serving.holder import BundleHolder, Loader, load_verified
from recsys.serving.live_api import live
from recsys.serving.live_view import LiveView
from recsys.serving.metrics import Metrics
from recsys.serving.routing import VariantRouter
from recsys.serving.schemas import RequestModels
from recsys.serving.state import ServingState, state

ADMIN_TOKEN_ENV = "RECSYS_ADMIN_TOKEN"
WORKDIR_ENV = "RECSYS_WORKDIR"
CONFIG_ENV = "RECSYS_CONFIG"
BENCH_ROUTES_ENV = "RECSYS_BENCH_ROUTES"  # "1": also serve GET /v1/_bare (benchmarks only)


def create_app(
    config: PipelineConfig | ServingConfig | None = None,
    workdir: str | Path | None = None,
    *,
    loader: Loader = load_verified,
) -> Flask:
    """A fresh app over one work directory. Loads nothing: the holder starts on the first request
    (or from gunicorn's post_worker_init), in the worker process."""
    registered_model = None  # the admin rollback moves this model's champion alias
    live_config, text_config = LiveConfig(), TextConfig()
    if isinstance(config, PipelineConfig):
        registered_model = config.nightly.registered_model
        live_config, text_config = config.live, config.text
        config = config.serving
    config = config or ServingConfig()
    workdir = Path(workdir or os.environ.get(WORKDIR_ENV) or "var")
    router = VariantRouter(config.variants, config.salt)
    metrics = Metrics()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=config.max_body_bytes, DEBUG=False, TESTING=False)
    app.json.sort_keys = False  # keep response fields in the documented order
    holder = BundleHolder(
        workdir,
        router.names,
        metrics,
        poll_seconds=config.poll_seconds,
        loader=loader,
        fleet=Fleet.from_env(),
    )
    exposure = None
    if config.exposure_log:  # a side channel: its failures are counted, never the answer's
        failures = metrics.side_channel_failures.labels(channel="exposure_log")
        exposure = ExposureLog(config.exposure_log, on_failure=lambda exc: failures.inc())
    app.extensions["recsys"] = ServingState(
        config=config,
        holder=holder,
        router=router,
        metrics=metrics,
        models=RequestModels(config),
        exposure=exposure,
        admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
        bench_routes=os.environ.get(BENCH_ROUTES_ENV) == "1",
        registered_model=registered_model,
        live=live_config,
        text=text_config,
        live_token=os.environ.get(live_config.token_env) or None,
    )
    _attach_live(app.extensions["recsys"], workdir)
    logs.init_app(app)
    errors.init_app(app)
    _register_blueprints(app)
    if app.extensions["recsys"].bench_routes:
        app.add_url_rule("/v1/_bare", "bare", _bare, methods=["GET"])
    app.before_request(_before)
    app.after_request(_after)
    return app


def _attach_live(st: ServingState, workdir: Path) -> None:
    """The live store of the work directory (opened lazily, per thread and process)."""
    st.live_store = open_store(workdir, st.live.store, st.live.redis_prefix)
    st.live_view = LiveView(st.live_store, st.live, st.text, st.metrics)


def create_app_from_env() -> Flask:
    """The gunicorn entry point's app: config from $RECSYS_CONFIG, work dir from $RECSYS_WORKDIR."""
    return create_app(load_config(os.environ.get(CONFIG_ENV) or None))


def start_holder(app: Flask, *, load_now: bool = False, watch: bool = True) -> None:
    """Start the app's bundle holder in this process (see BundleHolder.start)."""
    app.extensions["recsys"].holder.start(load_now=load_now, watch=watch)


def _register_blueprints(app: Flask) -> None:
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(admin)
    app.register_blueprint(live)


def _before() -> None:
    g.started = time.perf_counter()
    holder = state().holder
    holder.start()  # no-op once started in this process (gunicorn: post_worker_init)
    holder.check()  # a few stats: a moved pointer or generation wakes the watcher now


def _after(response):
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    variant = g.get("variant", "none")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    metrics = state().metrics
    metrics.child(metrics.latency, route, variant).observe(elapsed)
    metrics.child(metrics.requests, route, variant, str(response.status_code)).inc()
    if "rank_seconds" in g:  # the model's own time, for clients comparing it with their latency
        response.headers["Server-Timing"] = f"rank;dur={g.rank_seconds * 1000:.3f}"
    return response


def _bare() -> Response:
    """The cheapest JSON route on the same server: the load benchmark's baseline."""
    return jsonify(ok=True)
