"""Job: `recsys evaluate --a A --b B --data DIR --out DIR` — the offline A/B report of two bundles
(paths, versions, CURRENT/CHALLENGER, or MLflow aliases such as champion/challenger): report.html,
summary.json and per_user.parquet (user, segments, every metric for A and B)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common import add_common_arguments, config, setup_logging, workdir
from recsys import tracking
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.evaluation.compare import PRIMARY
from recsys.evaluation.report import render_html
from recsys.pipeline.abtest import compare_models, resolve_bundle
from recsys.ranking.model import RecommenderModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", required=True, help="control: bundle path, version or alias")
    parser.add_argument("--b", required=True, help="treatment: bundle path, version or alias")
    parser.add_argument("--data", type=Path, required=True, help="data directory to hold out from")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    cfg = config(args)
    root = workdir(args)
    path_a = resolve_bundle(args.a, root, cfg.nightly.registered_model)
    path_b = resolve_bundle(args.b, root, cfg.nightly.registered_model)
    model_a, model_b = RecommenderModel.load(path_a), RecommenderModel.load(path_b)
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
    summary_a, summary_b = result.a.summary(), result.b.summary()
    k = cfg.eval.k
    print(f"verdict: {result.verdict.label} — {result.verdict.rule}")
    for metric in cfg.eval.metrics:
        kind = "primary" if result.comparison.cell(metric).family == PRIMARY else "exploratory"
        print(f"  {metric}@{k}: A {summary_a[metric]:.4f}  B {summary_b[metric]:.4f}  ({kind})")
    print(f"report: {report}")
    if not args.no_tracking:
        with tracking.start_run("recsys-evaluate", "evaluate") as run_:
            run_.set_tags(
                {"a": model_a.version, "b": model_b.version, "verdict": result.verdict.decision}
            )
            run_.log_metrics({f"a_{m}_at_{k}": summary_a[m] for m in cfg.eval.metrics})
            run_.log_metrics({f"b_{m}_at_{k}": summary_b[m] for m in cfg.eval.metrics})
            run_.log_artifact(report.parent, "report")
    return 0
