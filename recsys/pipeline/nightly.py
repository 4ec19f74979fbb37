"""Pipeline: the nightly job — validate, split, train, embed, index, blend, evaluate against the
champion, gate, publish atomically, register in MLflow, prune. Resumable and idempotent.

State lives in the work directory: runs/<run key>/ (one per data + config fingerprint, with a
step manifest per finished step), encoders/, cache/, bundles/, CURRENT / CHALLENGER pointers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys import bundle, retention, tracking
from recsys.config import PipelineConfig, config_hash
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.data.stats import dataset_stats
from recsys.evaluation.report import render_html
from recsys.pipeline import abtest, stages
from recsys.pipeline.fingerprint import data_fingerprint, run_key
from recsys.pipeline.gate import decide
from recsys.ranking.model import RecommenderModel
from recsys.steps import StepRunner, WorkdirLock

log = logging.getLogger(__name__)


@dataclass
class NightlyResult:
    run_key: str
    published: str | None  # bundle version, None when nothing new was published
    promoted: bool
    message: str
    steps: list[dict[str, Any]] = field(default_factory=list)


def run_nightly(
    data_dir: Path,
    config: PipelineConfig,
    workdir: Path,
    say: Callable[[str], None] = print,
    track: bool = True,
    progress: bool = True,
    until: str | None = None,
) -> NightlyResult:
    """The whole job under the work-directory lock. Raises on bad input before any publishing.

    `until` stops after the named step (the stage commands: train-encoder, embed, ...); a later
    full run reuses what it left."""
    workdir = Path(workdir)
    with WorkdirLock(workdir), ExitStack() as stack:
        data_hash = data_fingerprint(Path(data_dir))
        key = run_key(data_hash, config)
        run_dir = workdir / "runs" / key
        runner = StepRunner(run_dir, progress=say)
        if runner.done("prune") is not None:  # the last step: this run finished
            version = runner.done("publish")["result"]["version"]
            message = f"nothing new: bundle {version} was already published from this data + config"
            say(message)
            return NightlyResult(key, None, False, message)
        dataset = load_dataset(data_dir, config.data)  # raises DataValidationError: nothing runs
        split = split_interactions(dataset.interactions, config.split)
        parent = _parent_run(stack, track, config, key, data_hash, workdir)
        ctx = stages.Context(dataset, split, config, workdir, run_dir, parent, progress)
        ctx.run_id = parent.run_id
        job = _Job(ctx, runner, parent, track, until)
        try:
            return _steps(job, key, data_hash, say)
        except _StopAfter as stop:
            message = f"stopped after step {until!r}: {stop.result}"
            say(message)
            return NightlyResult(key, None, False, message)


class _StopAfter(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__("stop")
        self.result = result


@dataclass
class _Job:
    """Runs one step: resumable (StepRunner), in its own MLflow child run, stopping at `until`."""

    ctx: stages.Context
    runner: StepRunner
    parent: Any
    track: bool
    until: str | None

    def step(self, name: str, fn: Callable[[stages.Context, Path], dict[str, Any]]) -> dict:
        ctx, parent = self.ctx, self.parent

        def body(out: Path) -> dict[str, Any]:
            if not self.track:
                return fn(ctx, out)
            with tracking.start_run(ctx.config.nightly.experiment, name, parent=parent) as child:
                ctx.tracker = child
                try:
                    return fn(ctx, out)
                finally:
                    ctx.tracker = parent

        result = self.runner.run(name, body)
        if name == self.until:
            raise _StopAfter(result)
        return result


def _steps(job: _Job, key: str, data_hash: str, say: Callable[[str], None]) -> NightlyResult:
    """The step order of the nightly job."""
    step, config, parent = job.step, job.ctx.config, job.parent
    step("validate", lambda c, out: dataset_stats(c.dataset))
    step("split", lambda c, out: _split_counts(c))
    if "text" in config.blend.sources:  # a collaborative-only config trains no encoder
        encoder = step("encoder", stages.encoder_step)
        parent.set_tags({"encoder_hash": encoder["encoder_hash"]})
        step("embed", stages.embed_step)
        index = step("index", stages.index_step)
        parent.set_tags({"index_type": index["factory"], "ann_recall": index["recall_at_10"]})
    step("collab", stages.collab_step)
    step("blend", stages.blend_step)
    evaluation = step("evaluate", evaluate_step)
    gate = step("gate", lambda c, out: gate_step(c, evaluation))
    result = step("publish", lambda c, out: publish_step(c, key, data_hash, evaluation, gate))
    if job.track:
        step("register", lambda c, out: register_step(c, parent, result, gate, evaluation))
    step("prune", lambda c, out: retention.prune(c.workdir, c.config, key))
    verb = "promoted to champion" if gate["promote"] else "published as challenger (held)"
    message = f"bundle {result['version']} {verb}: " + "; ".join(gate["reasons"])
    say(message)
    steps = [
        {"step": r.name, "resumed": r.resumed, "seconds": round(r.seconds, 2)}
        for r in job.runner.records
    ]
    return NightlyResult(key, result["version"], gate["promote"], message, steps)


def _parent_run(
    stack: ExitStack, track: bool, config: PipelineConfig, key: str, data_hash: str, workdir: Path
):
    if not track:
        return tracking.NullTracker()
    tags = {"run_key": key, "data_hash": data_hash, "config_hash": config_hash(config)}
    tags["workdir"] = str(workdir.resolve())  # runs of several work directories in one store
    parent = stack.enter_context(
        tracking.start_run(config.nightly.experiment, "nightly", tags=tags, workdir=workdir)
    )
    parent.log_params(config.model_dump(mode="json"))
    return parent


def _split_counts(ctx: stages.Context) -> dict[str, int]:
    return {
        "train": ctx.split.train.height,
        "valid": ctx.split.valid.height,
        "test": ctx.split.test.height,
    }


def evaluate_step(ctx: stages.Context, out: Path) -> dict[str, Any]:
    """Candidate vs the current champion on the same held-out users; the A/B report as an
    artifact. The first run (no champion) evaluates the candidate alone."""
    candidate = stages.candidate_model(ctx)
    champion_dir = bundle.current_bundle(ctx.workdir)
    result: dict[str, Any] = {"champion": None}
    if champion_dir is None:
        alone = abtest.evaluate_model(candidate, ctx.dataset, ctx.split, ctx.config)
        means = {name: float(v.mean()) for name, v in alone.metrics.items()}
        result["users"] = int(next(iter(alone.metrics.values())).size)
    else:
        champion = RecommenderModel.load(champion_dir)
        ab = abtest.compare_models(
            champion, candidate, ctx.dataset, ctx.split, ctx.config, ("champion", "candidate")
        )
        means = {name: float(v.mean()) for name, v in ab.b.metrics.items()}
        result["users"] = int(ab.overlap.size)
        result["champion"] = {name: float(v.mean()) for name, v in ab.a.metrics.items()}
        result["champion_version"] = champion.version
        result["verdict"] = ab.verdict.decision
        context = {"champion": champion.version, "candidate": f"run {ctx.run_dir.name}"}
        report = render_html(ab.comparison, ab.verdict, ab.extras("Nightly gate", **context), out)
        ctx.tracker.log_artifact(report.parent)
    result["candidate"] = means
    k = ctx.config.eval.k
    ctx.tracker.log_metrics({f"candidate_{name}_at_{k}": value for name, value in means.items()})
    return result


def gate_step(ctx: stages.Context, evaluation: dict[str, Any]) -> dict[str, Any]:
    decision = decide(
        evaluation["candidate"], evaluation["champion"], ctx.config.gate, evaluation.get("users")
    )
    ctx.tracker.log_metrics({"promoted": float(decision.promote)})
    return decision.to_dict()


def publish_step(
    ctx: stages.Context, key: str, data_hash: str, evaluation: dict, gate: dict
) -> dict[str, Any]:
    """Copy the model into a staging directory, publish with one rename, move a pointer.

    The version is derived from the run key, so a rerun after a crash between the rename and
    this step's manifest finds its own bundle and only moves the pointer."""
    existing = [m for m in bundle.list_bundles(ctx.workdir) if m.get("run_key") == key]
    if existing:
        version = existing[-1]["version"]
    else:
        version = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{key[:8]}"
        fields = {
            "run_key": key,
            "data_hash": data_hash,
            "config_hash": config_hash(ctx.config),
            "mlflow_run_id": ctx.run_id,
            "metrics": evaluation["candidate"],
            "gate": gate,
            **_describe(ctx),
        }
        with bundle.staging(ctx.workdir, version) as stage:
            _copy_tree(ctx.step_dir("blend") / "model", stage)
            stages.save_json(stage / "config.json", ctx.config.model_dump(mode="json"))
            bundle.publish(stage, ctx.workdir, version, fields)
    pointer = "CURRENT" if gate["promote"] else "CHALLENGER"
    if bundle.read_pointer(ctx.workdir, pointer) != version:
        bundle.set_pointer(ctx.workdir, version, pointer, reason="nightly gate")
    return {"version": version, "pointer": pointer}


def register_step(
    ctx: stages.Context, parent, result: dict, gate: dict, evaluation: dict
) -> dict[str, Any]:
    """Headline metrics on the nightly's parent run, then the bundle logged there as a pyfunc
    model, registered, and the champion (or challenger) alias pointed at it."""
    alias = "champion" if gate["promote"] else "challenger"
    name = tracking.registered_model_name(ctx.workdir, ctx.config.nightly.registered_model)
    parent.log_metrics(headline_metrics(evaluation, gate, ctx.config.eval.k))
    path = bundle.bundles_dir(ctx.workdir) / result["version"]
    reason = "nightly gate: " + "; ".join(gate["reasons"])
    version = tracking.log_bundle_model(parent, name, result["version"], path, alias, reason)
    return {"registered_model": name, "registry_version": version, "alias": alias}


def headline_metrics(evaluation: dict, gate: dict, k: int) -> dict[str, float]:
    """What compares nights in the MLflow UI: the candidate's (and the champion's) metrics at k
    on the held-out users, how many users, and whether the gate promoted."""
    out = {f"candidate_{name}_at_{k}": v for name, v in evaluation["candidate"].items()}
    for name, value in (evaluation.get("champion") or {}).items():
        out[f"champion_{name}_at_{k}"] = value
    out["eval_users"] = float(evaluation.get("users") or 0)
    out["promoted"] = float(gate["promote"])
    return out


def _describe(ctx: stages.Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "item_count": ctx.dataset.n_items,
        "user_count": ctx.dataset.n_users,
        "sources": list(ctx.config.blend.sources),
        "library_versions": _library_versions(),
    }
    if "text" in ctx.config.blend.sources:
        encoder = stages.read_json(ctx.run_dir / "steps" / "encoder.json")["result"]
        index = stages.read_json(ctx.run_dir / "steps" / "index.json")["result"]
        vectors = np.load(ctx.step_dir("embed") / "item_vectors.npy", mmap_mode="r")
        out.update(
            encoder_name=ctx.config.encoder.model_name_or_path,
            encoder_hash=encoder["encoder_hash"],
            embedding_dim=int(vectors.shape[1]),
            index_type=index["factory"],
            ann_recall_at_10=index["recall_at_10"],
        )
    return out


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "recsys-engine",
        "torch",
        "transformers",
        "faiss-cpu",
        "faiss-gpu-cu12",
        "lightfm-next",
        "implicit",
        "polars",
        "numpy",
        "mlflow",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
