"""Job: `recsys ab-report --exposures LOG --interactions DIR --window 7d --out DIR` — the live A/B
read offline: per-variant hit rate / CTR at k from the API's exposure log and what followed."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common import add_common_arguments, setup_logging
from recsys import tracking
from recsys.data.loaders import read_tables
from recsys.data.raw import read_table_file
from recsys.evaluation.exposures import live_ab_report, parse_window, read_exposures
from recsys.evaluation.report import render_html


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exposures", type=Path, required=True, help="exposure log (JSON lines)")
    parser.add_argument(
        "--interactions",
        type=Path,
        required=True,
        help="data directory (or file) with the interactions that followed",
    )
    parser.add_argument("--window", default="7d", help="attribution window, e.g. 30m, 12h, 7d")
    parser.add_argument("--k", type=int, default=10, help="positions counted (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--variants", nargs=2, metavar=("CONTROL", "TREATMENT"), default=None)
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    exposures = read_exposures(args.exposures)
    path = args.interactions
    if path.is_dir():  # a data directory (contract layout or MovieLens)
        interactions = read_tables(path).interactions.frame
    else:
        interactions = read_table_file(path).frame
    result = live_ab_report(
        exposures,
        interactions,
        parse_window(args.window),
        args.k,
        variants=tuple(args.variants) if args.variants else None,
    )
    report = render_html(result.comparison, result.verdict, result.extras, args.out)
    print(f"verdict: {result.verdict.decision.upper()} — {result.verdict.rule}")
    print(f"report: {report}")
    if not args.no_tracking:
        with tracking.start_run("recsys-ab-report", "ab-report") as run_:
            run_.set_tags({"verdict": result.verdict.decision, "window": args.window})
            run_.log_artifact(report.parent, "report")
    return 0
