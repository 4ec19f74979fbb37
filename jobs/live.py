"""Job: `recsys live export --out DIR` — the live store's overlay items and events as contract data
files (recsys.pipeline.live_merge); `recsys live status` — how much the store holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.jobs.common import add_common_arguments, config, workdir
from recsys.live_store import Store
from recsys.live_store import open_store as open_live_store
from recsys.pipeline.live_merge import export_live


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = sub.add_parser("export", help="write overlay items and events as data files")
    export.add_argument("--out", type=Path, required=True, help="directory to write (created)")
    add_common_arguments(export)
    status = sub.add_parser("status", help="print the store's overlay, hidden and event counts")
    add_common_arguments(status)


def open_store(args: argparse.Namespace) -> Store:
    """The work directory's live store, as configured ([live] store: SQLite or Redis)."""
    live = config(args).live
    return open_live_store(workdir(args), live.store, live.redis_prefix)


def run(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.action == "status":
        print(json.dumps({"store": store.location, **store.sizes()}, indent=2))
        return 0
    record = export_live(store, args.out)
    print(
        f"exported {len(record['items'])} overlay items and {record['events']} events "
        f"(through event {record['events_through']}) to {args.out}"
    )
    return 0
