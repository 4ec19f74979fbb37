"""Job: `recsys nightly --data DIR` — the main job (see recsys.pipeline.nightly). Also writes the
job's metrics in the Prometheus textfile format (recsys.pipeline.job_metrics)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jobs.common import add_common_arguments, config, progress, setup_logging, workdir
from recsys.bundle import read_pointer
from recsys.pipeline.job_metrics import write_nightly_metrics
from recsys.pipeline.nightly import run_nightly
from recsys.steps import LockedError

METRICS_ENV = "RECSYS_NIGHTLY_METRICS_FILE"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What the nightly and the stage commands share."""
    parser.add_argument("--data", type=Path, required=True, help="data directory (see README)")
    parser.add_argument(
        "--no-tracking", action="store_true", help="do not log to MLflow or register the bundle"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument(
        "--compute",
        choices=("local", "ray"),
        default=None,
        help="where the large loops run ([compute] backend; default: the config's, else local); "
        "not part of the run key",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help='Ray cluster to join with --compute ray ([compute] address), e.g. "auto"',
    )
    add_common_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        help=f"Prometheus textfile of the job's metrics (default: ${METRICS_ENV}, "
        "else <workdir>/metrics/nightly.prom)",
    )


def run(args: argparse.Namespace, until: str | None = None) -> int:
    """The whole nightly job, or (stage commands) the pipeline up to step `until`."""
    setup_logging(args.quiet)
    out = sys.stderr if args.json else sys.stdout  # --json: stdout is JSON
    root = workdir(args)
    read_pointer(root)  # an unreadable CURRENT fails here, not after an hour of training
    metrics_file = _metrics_file(args, root) if until is None else None
    try:
        result = run_nightly(
            args.data,
            config(args),
            root,
            say=lambda message: print(f"{_now()} {message}", file=out, flush=True),
            track=not args.no_tracking,
            progress=progress(args),
            until=until,
        )
    except LockedError:
        raise  # another run is at work: its own outcome is what the metrics should say
    except BaseException:
        if metrics_file is not None:
            write_nightly_metrics(metrics_file, root, success=False)
        raise
    if metrics_file is not None:
        write_nightly_metrics(
            metrics_file, root, success=True, steps=result.steps, promoted=result.promoted,
            published=result.published is not None,
        )  # fmt: skip
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        print(f"{_now()} run {result.run_key}: {result.message}")
    return 0


def _metrics_file(args: argparse.Namespace, root: Path) -> Path:
    chosen = args.metrics_file or os.environ.get(METRICS_ENV)
    return Path(chosen) if chosen else root / "metrics" / "nightly.prom"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def main(argv: Sequence[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["nightly", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
