"""Job: `recsys ab-report --exposures LOG... --interactions DIR --window 7d --out DIR` — the live
A/B read offline: per-user hit rate / CTR at k from the API's exposure logs (every replica's file)
and what followed, checked for sample ratio mismatch and bundle changes before any verdict; with
--json, the verdict, the sample-ratio check and each metric as one JSON document on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import polars as pl

from recsys import tracking
from recsys.config import ConfigError
from recsys.data.loaders import read_tables
from recsys.data.raw import read_table_file
from recsys.data.timestamps import parse_timestamps
from recsys.evaluation.exposures import ExposureLogError, parse_window, read_exposures
from recsys.evaluation.live import LiveABResult, live_ab_report
from recsys.evaluation.report import SUMMARY_FILE, render_html
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    setup_logging,
    workdir,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exposures",
        nargs="+",
        required=True,
        help="exposure logs: files, directories of *.jsonl, quoted globs ('logs/exposure.*.jsonl')"
        " or the configured [serving] exposure_log path (reads its per-process files)",
    )
    parser.add_argument(
        "--interactions",
        type=Path,
        required=True,
        help="data directory (or file) with the interactions that followed",
    )
    parser.add_argument("--window", default="7d", help="attribution window, e.g. 30m, 12h, 7d")
    parser.add_argument("--k", type=int, default=None, help="positions counted ([eval] k)")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument(
        "--variants",
        nargs=2,
        metavar=("CONTROL", "TREATMENT"),
        default=None,
        help="the two variants to compare (default: the log's two, in the configured order)",
    )
    parser.add_argument("--since", default=None, help="only exposures from then (ISO-8601/epoch)")
    parser.add_argument("--until", default=None, help="only exposures up to then")
    parser.add_argument(
        "--shares",
        nargs="+",
        metavar="VARIANT=SHARE",
        default=None,
        help="traffic shares the API ran with, for the sample-ratio check "
        "(default: [serving] variants of --config; none there: equal shares)",
    )
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_json_argument(parser)
    add_common_arguments(parser)


def parse_shares(items: list[str]) -> dict[str, float]:
    """['CURRENT=50', 'CHALLENGER=50'] -> {'CURRENT': 50.0, 'CHALLENGER': 50.0}."""
    shares = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            share = float(value) if sep and name else float("nan")
        except ValueError:
            share = float("nan")
        if not share > 0:
            raise ConfigError(f"--shares: expected VARIANT=SHARE with SHARE > 0, found {item!r}")
        shares[name] = share
    return shares


def between(exposures: pl.DataFrame, since: str | None, until: str | None) -> pl.DataFrame:
    """The exposures in [since, until] (either end open when None)."""
    low, high = _epoch(since, "--since"), _epoch(until, "--until")
    if low is not None:
        exposures = exposures.filter(pl.col("time") >= low)
    if high is not None:
        exposures = exposures.filter(pl.col("time") <= high)
    if exposures.height == 0:
        raise ExposureLogError(f"no exposure between --since {since} and --until {until}")
    return exposures


def _epoch(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    epoch = parse_timestamps(pl.Series([value]))[0]
    if epoch is None:
        raise ConfigError(f"{flag}: expected ISO-8601 or epoch seconds, found {value!r}")
    return int(epoch)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    cfg = config(args)
    shares = parse_shares(args.shares) if args.shares else dict(cfg.serving.variants) or None
    exposures = between(read_exposures(args.exposures), args.since, args.until)
    result = live_ab_report(
        exposures,
        _interactions(args.interactions),
        parse_window(args.window),
        args.k or cfg.eval.k,
        config=cfg.eval,
        variants=tuple(args.variants) if args.variants else None,
        shares=shares,
    )
    report = render_html(result.comparison, result.verdict, result.extras, args.out)
    run_id = None if args.no_tracking else _track(args, result, report)
    payload = {
        "verdict": {**result.verdict.to_dict(), "label": result.verdict.label},
        "control": result.comparison.name_a,
        "treatment": result.comparison.name_b,
        "k": result.comparison.k,
        "window": args.window,
        "sample_ratio": {
            **dataclasses.asdict(result.sample_ratio),
            "failed": result.sample_ratio.failed,
        },
        "metrics": result.comparison.headline(),
        "report": str(report.resolve()),
        "summary": str((report.parent / SUMMARY_FILE).resolve()),
        "mlflow_run_id": run_id,
    }
    lines = [f"verdict: {result.verdict.label} — {result.verdict.reasons[0]}"]
    lines += [f"warning: {warning}" for warning in result.verdict.warnings]
    emit(args, payload, [*lines, f"report: {report}"])
    return 0


def _interactions(path: Path) -> pl.DataFrame:
    if path.is_dir():  # a data directory (contract layout or MovieLens)
        return read_tables(path).interactions.frame
    return read_table_file(path).frame


def _track(args: argparse.Namespace, result: LiveABResult, report: Path) -> str:
    """The report as a run of the recsys-ab-report experiment; returns its id."""
    with tracking.start_run("recsys-ab-report", "ab-report", workdir=workdir(args)) as run_:
        run_.set_tags({"verdict": result.verdict.decision, "window": args.window})
        if math.isfinite(result.sample_ratio.p_value):
            run_.log_metrics({"srm_p_value": result.sample_ratio.p_value})
        run_.log_artifact(report.parent, "report")
        return run_.run_id
