"""Shared plumbing for job entry points: work directory, config, logging, error reporting."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from recsys.config import PipelineConfig, load_config

WORKDIR_ENV = "RECSYS_WORKDIR"
log = logging.getLogger("recsys")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="pipeline config (TOML)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help=f"all state lives here (default: ${WORKDIR_ENV} or ./var)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def workdir(args: argparse.Namespace) -> Path:
    """--workdir, else $RECSYS_WORKDIR, else ./var. Created on first use, not at import."""
    chosen = args.workdir or os.environ.get(WORKDIR_ENV) or "var"
    path = Path(chosen).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def config(args: argparse.Namespace) -> PipelineConfig:
    return load_config(args.config)


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = 2) -> int:
    """Print a user-facing error (no traceback) and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
