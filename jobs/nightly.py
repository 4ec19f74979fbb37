"""Job: `recsys nightly --data DIR` — the main job (see recsys.pipeline.nightly)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs.common import add_common_arguments, config, setup_logging, workdir
from recsys.bundle import read_pointer
from recsys.pipeline.nightly import run_nightly


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data directory (see README)")
    parser.add_argument(
        "--no-tracking", action="store_true", help="do not log to MLflow or register the bundle"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace, until: str | None = None) -> int:
    """The whole nightly job, or (stage commands) the pipeline up to step `until`."""
    setup_logging(args.quiet)
    root = workdir(args)
    read_pointer(root)  # an unreadable CURRENT fails here, not after an hour of training
    result = run_nightly(
        args.data,
        config(args),
        root,
        say=lambda message: print(message, flush=True),
        track=not args.no_tracking,
        progress=not args.quiet,
        until=until,
    )
    print(f"run {result.run_key}: {result.message}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["nightly", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
