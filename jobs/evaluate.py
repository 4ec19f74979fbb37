"""Job: `recsys evaluate --a A --b B --data DIR --out DIR` — the offline A/B report of two bundles
(paths, versions, CURRENT/CHALLENGER, or MLflow aliases such as champion/challenger): report.html,
summary.json and per_user.parquet (user, segments, every metric for A and B); with --json, the
verdict and each metric as one JSON document on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from recsys import tracking
from recsys.config import PipelineConfig
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.evaluation.compare import PRIMARY
from recsys.evaluation.evaluate import ABResult
from recsys.evaluation.report import SUMMARY_FILE, render_html
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    setup_logging,
    workdir,
)
from recsys.pipeline.abtest import compare_models, resolve_bundle
from recsys.ranking.model import RecommenderModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", required=True, help="control: bundle path, version or alias")
    parser.add_argument("--b", required=True, help="treatment: bundle path, version or alias")
    parser.add_argument("--data", type=Path, required=True, help="data directory to hold out from")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_json_argument(parser)
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    cfg = config(args)
    root = workdir(args)
    registered = tracking.registered_model_name(root, cfg.nightly.registered_model)
    path_a = resolve_bundle(args.a, root, registered)
    path_b = resolve_bundle(args.b, root, registered)
    # never a ranker refitted on every interaction: it has seen the held-out ones
    model_a = RecommenderModel.load(path_a, evaluated=True)
    model_b = RecommenderModel.load(path_b, evaluated=True)
    dataset = load_dataset(args.data, cfg.data)
    split = split_interactions(dataset.interactions, cfg.split)
    names = (f"A {model_a.version}", f"B {model_b.version}")
    result = compare_models(model_a, model_b, dataset, split, cfg, names)
    context = {
        "A": str(path_a),
        "B": str(path_b),
        "data": str(args.data),
        "held out": f"{cfg.split.method}, {len(result.overlap)} users",
    }
    report = render_html(result.comparison, result.verdict, result.extras(**context), args.out)
    versions = (model_a.version, model_b.version)
    run_id = None if args.no_tracking else _track(root, cfg, result, versions, report)
    payload = {
        "verdict": {**result.verdict.to_dict(), "label": result.verdict.label},
        "a": {"version": versions[0], "path": str(Path(path_a).resolve())},
        "b": {"version": versions[1], "path": str(Path(path_b).resolve())},
        "k": cfg.eval.k,
        "users": len(result.overlap),
        "metrics": result.comparison.headline(),
        "report": str(report.resolve()),
        "summary": str((report.parent / SUMMARY_FILE).resolve()),
        "mlflow_run_id": run_id,
    }
    emit(args, payload, [*_lines(result, cfg), f"report: {report}"])
    return 0


def _lines(result: ABResult, cfg: PipelineConfig) -> list[str]:
    summary_a, summary_b = result.a.summary(), result.b.summary()
    lines = [f"verdict: {result.verdict.label} — {result.verdict.rule}"]
    for metric in cfg.eval.metrics:
        kind = "primary" if result.comparison.cell(metric).family == PRIMARY else "exploratory"
        a, b = summary_a[metric], summary_b[metric]
        lines.append(f"  {metric}@{cfg.eval.k}: A {a:.4f}  B {b:.4f}  ({kind})")
    return lines


def _track(
    root: Path, cfg: PipelineConfig, result: ABResult, versions: tuple[str, str], report: Path
) -> str:
    """The comparison as a run of the recsys-evaluate experiment; returns its id."""
    k, metrics = cfg.eval.k, cfg.eval.metrics
    summary_a, summary_b = result.a.summary(), result.b.summary()
    with tracking.start_run("recsys-evaluate", "evaluate", workdir=root) as run_:
        run_.set_tags({"a": versions[0], "b": versions[1], "verdict": result.verdict.decision})
        run_.log_metrics({f"a_{m}_at_{k}": summary_a[m] for m in metrics})
        run_.log_metrics({f"b_{m}_at_{k}": summary_b[m] for m in metrics})
        run_.log_artifact(report.parent, "report")
        return run_.run_id
