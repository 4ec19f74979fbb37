"""Jobs: `recsys train-encoder | embed | build-index | train-collab --data DIR` — run the nightly
pipeline up to one stage (same work directory, same step manifests: a later nightly reuses it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common import add_common_arguments, config, setup_logging, workdir
from recsys.pipeline.nightly import run_nightly

STAGE_STEPS = {
    "train-encoder": "encoder",
    "embed": "embed",
    "build-index": "index",
    "train-collab": "collab",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data directory (see README)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    result = run_nightly(
        args.data,
        config(args),
        workdir(args),
        say=lambda message: print(message, flush=True),
        track=not args.no_tracking,
        progress=not args.quiet,
        until=STAGE_STEPS[args.command],
    )
    print(f"run {result.run_key}: {result.message}")
    return 0
