"""Pipeline: what a step would reuse, said before it runs (`recsys nightly --dry-run`) — the
encoder the schedule keeps, the tune choice and fitted-source cache entries. Reads encoders/ and
cache/ only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from recsys.config import config_hash
from recsys.pipeline import fit
from recsys.pipeline.context import COLLAB_CACHE, TRAINED, TUNE_CACHE, Context
from recsys.pipeline.stages import Frame, reusable_encoder


def encoder(ctx: Context) -> str:
    """Reuse the newest encoder of this encoder config while retraining is not due, or train."""
    days = ctx.config.encoder.retrain_every_days
    found = reusable_encoder(ctx.workdir, config_hash(ctx.config.encoder), days)
    if found is None:
        return f"trains a new encoder (none of this config younger than {days} days)"
    trained = json.loads((found / TRAINED).read_text(encoding="utf-8"))["trained_at"]
    age = (time.time() - trained) / 86400
    return f"reuses encoder {found.name} ({age:.1f} days old; retrained after {days})"


def fit_sources(frame: Frame, refit: bool = False) -> Callable[[Context], str]:
    """Fit the sources on `frame(ctx)`, or copy them from the fitted-source cache. `refit`: a
    frame fitted with the recency the collab step chooses (Context.fit_config)."""

    def preview(ctx: Context) -> str:
        tuning = ctx.config.collab.model == "auto" or ctx.config.collab.tune
        if tuning and ctx.steps.done("tune") is None:  # the key depends on what tune chooses
            return "fits the sources with what the tune step chooses, or reuses them from the cache"
        if refit and ctx.steps.done("collab") is None and _auto_recency(ctx):
            return "fits the sources with the recency the collab step chooses, or reuses them"
        key = fit.frame_sources_key(ctx.dataset, frame(ctx), ctx.fit_config())
        cached = (ctx.workdir / COLLAB_CACHE / key / "done").is_file()
        if cached and ctx.forced:
            return f"fits the sources afresh (forced: cache entry {key} is replaced)"
        return f"reuses fitted sources {key} from the cache" if cached else "fits the sources"

    return preview


def _auto_recency(ctx: Context) -> bool:
    """Does a fitted item-graph source choose its recency ("auto")?"""
    names = fit.item_graph_names(ctx.config)
    return any(getattr(ctx.config, name).recency == "auto" for name in names)


def tune(ctx: Context) -> str:
    """Search the collaborative model and its hyperparameters, or read the choice cached."""
    key = fit.frame_sources_key(ctx.dataset, ctx.split.train, ctx.config)
    cached = (ctx.workdir / TUNE_CACHE / f"{key}.json").is_file()
    if cached and ctx.forced:
        return f"searches afresh (forced: cache entry {key} is replaced)"
    return f"reuses the choice {key} from the cache" if cached else "searches the grid"
