"""Test helper for tests/deploy: what the code itself says about commands, ports, routes and
environment variables, to check the deployment files against (reads source; writes nothing)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
from pathlib import Path

from support import REPO

GUNICORN_CONF = REPO / "serving" / "gunicorn_conf.py"
SOURCE_DIRS = ("recsys", "jobs", "serving")


def cli_error(argv: list[str]) -> str | None:
    """None when the real `recsys` parser accepts argv, else argparse's message."""
    from recsys.jobs.cli import build_parser

    selected = next((arg for arg in argv if not arg.startswith("-")), None)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser(selected).parse_args(argv)
    except SystemExit:
        return stderr.getvalue().strip() or "argparse exited"
    return None


def option(argv: list[str], name: str) -> str:
    """The value after `name` in an argument list."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def gunicorn_default_bind() -> tuple[str, int]:
    """serving/gunicorn_conf.py's bind when $RECSYS_BIND is not set."""
    saved = os.environ.pop("RECSYS_BIND", None)
    try:
        bind = runpy.run_path(str(GUNICORN_CONF))["bind"]
    finally:
        if saved is not None:
            os.environ["RECSYS_BIND"] = saved
    host, _, port = bind.rpartition(":")
    return host, int(port)


def flask_routes(workdir: Path) -> set[str]:
    """Every URL rule of the API as `recsys serve` builds it (no bundle is loaded)."""
    from recsys.config import ServingConfig
    from recsys.serving.app import create_app

    app = create_app(ServingConfig(), workdir=workdir)
    return {rule.rule for rule in app.url_map.iter_rules()}


def unknown_env_names(names: set[str]) -> set[str]:
    """The RECSYS_* names the code does not read: neither a string literal in its source nor a
    config override RECSYS_<SECTION>__<KEY> of an existing key."""
    from recsys.config import load_config

    literal: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in (REPO / directory).rglob("*.py"):
            literal |= set(re.findall(r"[\"'](RECSYS_[A-Z_]+)[\"']", path.read_text()))
    config = load_config(None)
    unknown = set()
    for name in names - literal:
        section, _, key = name.removeprefix("RECSYS_").lower().partition("__")
        if not (key and hasattr(getattr(config, section, None), key)):
            unknown.add(name)
    return unknown
