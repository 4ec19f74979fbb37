"""Serving test fixtures: apps over temporary work directories (no bundle unless built)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from recsys.config import ServingConfig
from recsys.serving.app import create_app, start_holder


@pytest.fixture
def make_app(tmp_path, monkeypatch) -> Iterator[Callable[..., Flask]]:
    """make_app(token=None, **serving_overrides) -> an app over tmp_path/var, holder started
    synchronously (no watcher thread), stopped after the test."""
    apps: list[Flask] = []

    def factory(token: str | None = None, workdir=None, **overrides) -> Flask:
        if token is None:
            monkeypatch.delenv("RECSYS_ADMIN_TOKEN", raising=False)
        else:
            monkeypatch.setenv("RECSYS_ADMIN_TOKEN", token)
        overrides.setdefault("poll_seconds", 0.0)
        app = create_app(ServingConfig(**overrides), workdir=workdir or tmp_path / "var")
        start_holder(app, load_now=True, watch=False)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["recsys"].holder.stop()
