"""Shared plumbing for job entry points: work directory, config, logging, error reporting."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recsys.config import ConfigError, PipelineConfig, load_config
from recsys.logs import configure

WORKDIR_ENV = "RECSYS_WORKDIR"
log = logging.getLogger("recsys")


CONFIG_ENV = "RECSYS_CONFIG"


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    config: bool = True,
    workdir: bool = True,
    quiet: bool = True,
) -> None:
    """--config, --workdir and -q, each only where the command uses it: an option a command
    accepts and ignores is worse than a usage error (exit 2)."""
    if config:
        parser.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"pipeline config (TOML; default: ${CONFIG_ENV}, else the built-in defaults)",
        )
    if workdir:
        parser.add_argument(
            "--workdir",
            type=Path,
            default=None,
            help=f"all state lives here (default: ${WORKDIR_ENV} or ./var)",
        )
    if quiet:
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="warnings only: no INFO logs or progress bars",
        )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document on stdout (logs stay on stderr)",
    )


def emit(args: argparse.Namespace, payload: dict[str, Any], lines: Iterable[str]) -> None:
    """The command's report: `payload` as one JSON document with --json, else `lines`."""
    if getattr(args, "json", False):
        print(json.dumps(_plain(payload), indent=2, default=str, allow_nan=False))
    else:
        for line in lines:
            print(line)


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars as Python numbers, NaN and infinities as null (strict JSON)."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, dict | list):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def workdir(args: argparse.Namespace, create: bool = True) -> Path:
    """--workdir, else $RECSYS_WORKDIR, else ./var. Created on first use (not at import, nor
    with create=False: a dry run writes nothing)."""
    chosen = args.workdir or os.environ.get(WORKDIR_ENV) or "var"
    path = Path(chosen).resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def config_file(args: argparse.Namespace) -> Path | None:
    """--config, else $RECSYS_CONFIG, else None (the built-in defaults)."""
    chosen = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else None


def config(args: argparse.Namespace) -> PipelineConfig:
    """The config file's values, with RECSYS_<SECTION>__<KEY> variables on top, then the
    command line's --compute / --ray-address (commands that have them)."""
    compute = {}
    if getattr(args, "compute", None):
        compute["backend"] = args.compute
    if getattr(args, "ray_address", None):
        compute["address"] = args.ray_address
    loaded = load_config(config_file(args), {"compute": compute} if compute else None)
    if compute.get("address") and loaded.compute.backend != "ray":
        raise ConfigError(
            f"--ray-address {compute['address']}: expected --compute ray (or [compute] backend = "
            f"'ray'), found backend {loaded.compute.backend!r}"
        )
    return loaded


def setup_logging(quiet: bool = False) -> None:
    """INFO (WARNING with --quiet) on stderr, timestamped; JSON lines if RECSYS_LOG_FORMAT=json."""
    configure(logging.WARNING if quiet else logging.INFO)


def progress(args: argparse.Namespace) -> bool:
    """Progress bars: not with --quiet, and only on a terminal (cron logs stay clean)."""
    return not args.quiet and sys.stderr.isatty()


def fail(message: str, code: int = 2) -> int:
    """Print a user-facing error (no traceback) and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
