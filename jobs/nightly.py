"""Job: `recsys nightly --data DIR [--force] [--dry-run] [--json]` — the main job (see
recsys.pipeline.nightly). Also writes the job's metrics in the Prometheus textfile format
(recsys.pipeline.job_metrics); a dry run writes nothing."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from recsys.bundle import read_pointer
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    progress,
    setup_logging,
    workdir,
)
from recsys.pipeline.job_metrics import write_nightly_metrics
from recsys.pipeline.nightly import plan_nightly, run_nightly
from recsys.steps import LockedError

METRICS_ENV = "RECSYS_NIGHTLY_METRICS_FILE"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What the nightly and the stage commands share."""
    parser.add_argument("--data", type=Path, required=True, help="data directory (see README)")
    parser.add_argument(
        "--no-tracking", action="store_true", help="do not log to MLflow or register the bundle"
    )
    add_json_argument(parser)
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
        "--live",
        action="store_true",
        help="merge the work directory's live store (overlay items, events) into the data; once "
        "the bundle is champion, the store retires what it contains",
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        help=f"Prometheus textfile of the job's metrics (default: ${METRICS_ENV}, "
        "else <workdir>/metrics/nightly.prom)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even if this data + config + code was already published: a new attempt, "
        "every step run again, a new bundle version (see README: the nightly job)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say which steps would run, resume or be skipped, or that nothing is new; "
        "writes nothing",
    )


def run(args: argparse.Namespace, until: str | None = None) -> int:
    """The whole nightly job, or (stage commands) the pipeline up to step `until`."""
    setup_logging(args.quiet)
    if getattr(args, "dry_run", False):
        return _dry_run(args)
    out = sys.stderr if args.json else sys.stdout  # --json: stdout is JSON
    root = workdir(args)
    read_pointer(root)  # an unreadable CURRENT fails here, not after an hour of training
    metrics_file = _metrics_file(args, root) if until is None else None
    data, live = args.data, None
    if getattr(args, "live", False):
        data, live = _merged_live(args, root)
    try:
        result = run_nightly(
            data,
            config(args),
            root,
            say=lambda message: print(f"{_now()} {message}", file=out, flush=True),
            track=not args.no_tracking,
            progress=progress(args),
            until=until,
            live=live,
            force=getattr(args, "force", False),
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
    if live is not None and result.promoted:
        _retire(args, root, result.published, out)
    line = f"{_now()} run {result.run_key}: {result.message}"
    emit(args, dataclasses.asdict(result), [line])
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    """What `recsys nightly` would do now; nothing written (not even the work directory)."""
    root = workdir(args, create=False)
    read_pointer(root)
    plan = plan_nightly(args.data, config(args), root, track=not args.no_tracking, force=args.force)
    lines = [f"dry run: {plan.message}"]
    lines += [f"  {s['step']:<12} {s['action']:<7} {s['why']}".rstrip() for s in plan.steps]
    emit(args, {"dry_run": True, **dataclasses.asdict(plan)}, lines)
    return 0


def _merged_live(args: argparse.Namespace, root: Path) -> tuple[Path, dict]:
    """--data plus the live store, merged into <workdir>/live/nightly-input/ (replaced)."""
    from recsys.jobs.live import open_store
    from recsys.pipeline.live_merge import export_live, merge_live

    export = root / "live" / "nightly-export"
    record = export_live(open_store(args), export)
    merged = root / "live" / "nightly-input"
    merge_live(args.data, export, merged)
    return merged, record


def _retire(args: argparse.Namespace, root: Path, version: str, out) -> None:
    """The champion contains the exported rows: the store lets them go (later changes stay)."""
    from recsys.bundle import bundle_path, read_manifest
    from recsys.jobs.live import open_store

    record = read_manifest(bundle_path(root, version)).get("live") or {}
    store = open_store(args)
    if record.get("store", store.identity) != store.identity:  # [live] store changed meanwhile
        print(f"{_now()} live store: bundle {version} holds rows of {record['store']}, not of "
              f"the configured {store.identity}: nothing retired", file=out)  # fmt: skip
        return
    items = [(item_id, seq) for item_id, seq in record.get("items", [])]
    counts = store.retire(items, int(record.get("events_through", 0)))
    print(f"{_now()} live store: retired {counts['items']} items, {counts['events']} events "
          f"contained in bundle {version}", file=out)  # fmt: skip


def _metrics_file(args: argparse.Namespace, root: Path) -> Path:
    chosen = args.metrics_file or os.environ.get(METRICS_ENV)
    return Path(chosen) if chosen else root / "metrics" / "nightly.prom"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def main(argv: Sequence[str] | None = None) -> int:
    from recsys.jobs.cli import main as cli_main

    return cli_main(["nightly", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
