"""Job: `recsys gc [--dry-run] [--json]` — apply the configured retention to the work directory
(recsys.pipeline.gc): old bundles, runs, encoders and caches nothing kept needs. Takes the
nightly's lock (exit 75 while a run holds it); a dry run takes no lock and deletes nothing."""

from __future__ import annotations

import argparse
from typing import Any

from recsys.errors import UserError
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    setup_logging,
    workdir,
)
from recsys.pipeline import gc
from recsys.steps import LockedError, WorkdirLock, lock_holder

# (result key, what the line calls it); runs_trimmed: cut to their step manifests
REMOVALS = (
    ("bundles_removed", "bundles"),
    ("staging_removed", "stale bundle stagings"),
    ("runs_removed", "runs"),
    ("runs_trimmed", "finished runs' step outputs"),
    ("encoders_removed", "encoders"),
    ("embedding_caches_removed", "embedding caches"),
    ("collab_caches_removed", "fitted-source caches"),
    ("tune_caches_removed", "tune choices"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be removed; remove nothing"
    )
    add_json_argument(parser)
    add_common_arguments(parser, quiet=False)  # config: the retention settings ([nightly] keep_*)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    root = workdir(args, create=False)
    cfg = config(args)  # a bad config stops here, before anything is looked at
    if not root.is_dir():
        raise UserError(f"{root}: no such work directory (--workdir, else $RECSYS_WORKDIR)")
    if args.dry_run:
        holder = lock_holder(root)
        if holder is not None:
            raise LockedError(
                f"{root / 'nightly.lock'}: a run holds this work directory ({holder})"
            )
        result = gc.collect(root, cfg, keep_unfinished=True, dry_run=True)
    else:
        with WorkdirLock(root):
            result = gc.collect(root, cfg, keep_unfinished=True)
    emit(args, result, _lines(result))
    return 0


def _lines(result: dict[str, Any]) -> list[str]:
    verb = "would remove" if result["dry_run"] else "removed"
    lines = []
    for key, what in REMOVALS:
        if result[key]:
            lines.append(f"{verb} {len(result[key])} {what}: {', '.join(result[key])}")
    freed = result["bytes_freed"] / 2**20
    lines.append(f"{verb} {freed:,.1f} MiB" if lines else "nothing to remove")
    kept = result["kept"]
    lines.append(f"kept bundles: {', '.join(kept['bundles']) or 'none'}")
    return lines
