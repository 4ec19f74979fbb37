"""Job: `recsys data validate|stats --data DIR` — load and validate a data directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.data.loaders import load_dataset
from recsys.data.stats import dataset_stats, format_stats
from recsys.jobs.common import add_common_arguments, add_json_argument, config, setup_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{validate,stats}")
    for name, help_text in (
        ("validate", "check a data directory against the input contract; exit 1 on errors"),
        ("stats", "print users / items / interactions / density of a data directory"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--data", type=Path, required=True, help="data directory")
        add_json_argument(cmd)
        add_common_arguments(cmd, workdir=False, quiet=False)  # reads no state, logs no INFO


def run(args: argparse.Namespace) -> int:
    setup_logging()
    dataset = load_dataset(args.data, config(args).data)
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
    elif args.data_command == "validate":
        print(
            f"ok: {args.data}: {stats['users']} users, {stats['items']} items, "
            f"{stats['interactions']} interactions"
        )
    else:
        print(format_stats(stats))
    return 0
