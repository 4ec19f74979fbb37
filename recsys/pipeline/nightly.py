"""Pipeline: the nightly job — validate, split, train, embed, index, fit the sources, learn the
blend, write the model, evaluate against the champion, gate, publish atomically, register in
MLflow, prune. Resumable and idempotent; `force` reruns published inputs as a new attempt, and
`plan_nightly` says what a run would do without writing anything.

The job is the declarative step list STEPS (name, step function, condition, what it provides);
the step functions are recsys.pipeline.stages. State lives in the work directory: runs/<run key>/
(one per data + config fingerprint, with a step manifest per finished step), encoders/, cache/,
bundles/, CURRENT / CHALLENGER pointers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys import tracking
from recsys.config import PipelineConfig
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.pipeline import context as files  # what each step provides
from recsys.pipeline import preview, runs, stages
from recsys.pipeline.context import Context, Step
from recsys.pipeline.fit import FRAME_SOURCES
from recsys.steps import LockedError, StepRunner, WorkdirLock, lock_holder

log = logging.getLogger(__name__)


def _text(ctx: Context) -> bool:
    """[blend] sources include text"""
    return ctx.uses_text


def _tracked(ctx: Context) -> bool:
    """tracking on (no --no-tracking)"""
    return ctx.track


def _encoder_tags(result: dict[str, Any]) -> dict[str, Any]:
    return {"encoder_hash": result["encoder_hash"]}


def _index_tags(result: dict[str, Any]) -> dict[str, Any]:
    return {"index_type": result["factory"], "ann_recall": result["recall_at_10"]}


def _refit(ctx: Context) -> bool:
    """[nightly] refit = true"""
    return ctx.config.nightly.refit


def _refit_text(ctx: Context) -> bool:
    """[nightly] refit = true and [blend] sources include text"""
    return ctx.config.nightly.refit and ctx.uses_text


def _refit_weights(ctx: Context) -> bool:
    """[nightly] refit and refit_weights, learned weights (no [blend] fixed_weights), a test part"""
    nightly = ctx.config.nightly
    learned = ctx.config.blend.fixed_weights is None and ctx.split.test.height > 0
    return nightly.refit and nightly.refit_weights and learned


def _refit_towers(ctx: Context) -> bool:
    """[nightly] refit, refit_towers_epochs > 0, text blended, frozen-path towers"""
    return stages.refit_towers(ctx)


def _refit_encoder_tags(result: dict[str, Any]) -> dict[str, Any]:
    """The published towers beside the evaluated ones (encoder_hash, from the encoder step)."""
    return {"refit_encoder_hash": result["encoder_hash"], "refit_encoder_epochs": result["epochs"]}


def _tune(ctx: Context) -> bool:
    """[collab] model = "auto" or tune = true"""
    collab = ctx.config.collab  # the collab source is fitted (and so resolved) in every config
    return collab.model == "auto" or collab.tune


def _tune_tags(result: dict[str, Any]) -> dict[str, Any]:
    chosen = result["chosen"]
    return {"collab_model": chosen["model"], "collab_factors": chosen["factors"]}


def _collab_tags(result: dict[str, Any]) -> dict[str, Any]:
    """The evaluated candidate's fit (MLflow beside the manifest's `fit` record)."""
    return {
        "evaluated_sources_key": result["key"],
        "evaluated_interactions": result.get("interactions"),
    }


def _refit_tags(result: dict[str, Any]) -> dict[str, Any]:
    """The published sources' fit, on every interaction."""
    return {
        "refit": "true",
        "refit_sources_key": result["key"],
        "refit_interactions": result.get("interactions"),
    }


TRAIN = stages.train_frame  # the split's train part: validation choices are made on it
ALL = stages.all_frame  # every interaction given: what is published is refitted on it
# The job, in order: a step runs when its condition holds (or resumes from its manifest), and
# later steps read what it provides. Adding a step is one line here.
STEPS: tuple[Step, ...] = (
    Step("validate", stages.validate_step),
    Step("split", stages.split_step),
    Step("encoder", stages.encoder_step, _text, (files.ENCODER,), _encoder_tags, preview.encoder),
    Step("embed", stages.embed_step, _text, (files.ITEM_VECTORS,)),
    Step("index", stages.index_step, _text, (files.INDEX,), _index_tags),
    Step("tune", stages.tune_step, _tune, tags=_tune_tags, preview=preview.tune),
    Step(
        "collab",
        stages.fit_sources_step(TRAIN),
        provides=tuple(FRAME_SOURCES),
        tags=_collab_tags,
        preview=preview.fit_sources(TRAIN),
    ),
    Step("prior", stages.prior_step(TRAIN), _text, (files.ITEM_BIAS,)),
    Step("weights", stages.weights_step, provides=(files.WEIGHTS,)),
    Step("users", stages.users_step, _text, (files.USER_VECTORS, files.USER_KEYS)),
    Step("model", stages.model_step, provides=(files.MODEL,)),
    Step("evaluate", stages.evaluate_step),
    Step("gate", stages.gate_step),
    # Refit for publishing: the weights learned with sources fitted on train + valid and scored
    # on test, then the same sources and hyperparameters fitted on every interaction.
    Step(
        "refit_weights",
        stages.refit_weights_step,
        _refit_weights,
        (files.WEIGHTS,),
        preview=preview.fit_sources(stages.shifted_frame, refit=True),
    ),
    Step(
        "refit",
        stages.fit_sources_step(ALL),
        _refit,
        tuple(FRAME_SOURCES),
        _refit_tags,
        preview.fit_sources(ALL, refit=True),
    ),
    Step("refit_prior", stages.prior_step(ALL), _refit_text, (files.ITEM_BIAS,)),
    # The published towers: the evaluated encoder trained on every interaction (after
    # refit_weights: its test-part scores come from towers that never saw that part), and what
    # is computed from the encoder, again.
    Step(
        "refit_encoder",
        stages.refit_encoder_step,
        _refit_towers,
        (files.ENCODER,),
        _refit_encoder_tags,
    ),
    Step("refit_embed", stages.embed_step, _refit_towers, (files.ITEM_VECTORS,)),
    Step("refit_index", stages.index_step, _refit_towers, (files.INDEX,)),
    Step("refit_users", stages.users_step, _refit_towers, (files.USER_VECTORS, files.USER_KEYS)),
    Step("published", stages.published_step, _refit, (files.MODEL,)),
    Step("publish", stages.publish_step),
    Step("register", stages.register_step, _tracked),
    Step("prune", stages.prune_step),
)


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
    live: dict[str, Any] | None = None,
    force: bool = False,
) -> NightlyResult:
    """The whole job under the work-directory lock. Raises on bad input before any publishing.

    `until` stops after the named step (the stage commands: train-encoder, embed, ...); a later
    full run reuses what it left. `live`: the record of a live export merged into data_dir
    (recsys.pipeline.live_merge), stamped on the bundle's manifest. `force` runs even when these
    inputs were already published: a new attempt (runs/<new key>/, every step run again, a new
    bundle version)."""
    workdir = Path(workdir)
    with WorkdirLock(workdir), ExitStack() as stack:
        run = runs.identify(Path(data_dir), config, force)
        done = None if force else runs.finished_run(workdir, run.base_key, STEPS[-1].name)
        if done is not None:
            message = _nothing_new(done)
            say(message)
            return NightlyResult(done.key, None, False, message)
        dataset = load_dataset(data_dir, config.data)  # raises DataValidationError: nothing runs
        split = split_interactions(dataset.interactions, config.split)
        runner = StepRunner(runs.run_dir(workdir, run.key), progress=say)
        runner.record_identity(run.to_dict())
        parent = _parent_run(stack, track, config, run, workdir)
        ctx = Context(dataset, split, config, workdir, runner, parent, parent, progress, track)
        ctx.run_key, ctx.data_hash, ctx.forced = run.key, run.data_hash, force
        ctx.live = live
        for step in STEPS:
            if not step.when(ctx):
                continue
            result = _run_step(ctx, step)
            if step.name == until:
                message = f"stopped after step {until!r}: {result}"
                say(message)
                return NightlyResult(run.key, None, False, message)
        return _finished(ctx, say)


def _nothing_new(done: runs.FinishedRun) -> str:
    return f"nothing new: bundle {done.version} was already published from this data + config"


@dataclass
class NightlyPlan:
    """What `run_nightly` would do now (a dry run): each step's action — "run", "resume" (its
    manifest is there: done in an earlier attempt, reused) or "skip" (its condition is off)."""

    run_key: str
    forced: bool
    nothing_new: bool
    bundle: str | None  # the bundle a "nothing new" run names
    message: str
    steps: list[dict[str, str]] = field(default_factory=list)


def plan_nightly(
    data_dir: Path, config: PipelineConfig, workdir: Path, track: bool = True, force: bool = False
) -> NightlyPlan:
    """The dry run: reads the data, the run's manifests and the caches; writes nothing (no
    lock, no run directory, no MLflow run). Raises what the run would: LockedError while
    another run holds the work directory, DataValidationError on bad data."""
    workdir = Path(workdir)
    holder = lock_holder(workdir)
    if holder is not None:
        raise LockedError(
            f"{workdir / 'nightly.lock'}: another run holds this work directory ({holder}); "
            "a dry run now would read its half-written state"
        )
    run = runs.identify(Path(data_dir), config, force)
    done = None if force else runs.finished_run(workdir, run.base_key, STEPS[-1].name)
    if done is not None:
        return NightlyPlan(done.key, force, True, done.version, _nothing_new(done))
    dataset = load_dataset(data_dir, config.data)
    split = split_interactions(dataset.interactions, config.split)
    runner = StepRunner(runs.run_dir(workdir, run.key))  # reads manifests, creates nothing
    ctx = Context(dataset, split, config, workdir, runner, track=track, forced=force)
    ctx.run_key, ctx.data_hash = run.key, run.data_hash
    steps = [_plan_step(ctx, step) for step in STEPS]
    resumed = sum(s["action"] == "resume" for s in steps)
    how = f"resume run {run.key} ({resumed} steps done)" if resumed else f"start run {run.key}"
    message = f"would {how}{' (forced)' if force else ''} and publish a new bundle"
    return NightlyPlan(run.key, force, False, None, message, steps)


def _plan_step(ctx: Context, step: Step) -> dict[str, str]:
    if not step.when(ctx):
        return {"step": step.name, "action": "skip", "why": f"condition off: {step.when.__doc__}"}
    if ctx.steps.done(step.name) is not None:
        return {"step": step.name, "action": "resume", "why": "done in an earlier attempt"}
    return {"step": step.name, "action": "run", "why": step.preview(ctx) if step.preview else ""}


def _run_step(ctx: Context, step: Step) -> dict[str, Any]:
    """One step: resumable (StepRunner), in its own MLflow child run when tracking."""

    def body(out: Path) -> dict[str, Any] | None:
        if not ctx.track:
            return step.run(ctx, out)
        with tracking.start_run(ctx.config.nightly.experiment, step.name, parent=ctx.parent) as run:
            ctx.tracker = run
            try:
                return step.run(ctx, out)
            finally:
                ctx.tracker = ctx.parent

    result = ctx.steps.run(step.name, body)
    ctx.providers.update(dict.fromkeys(step.provides, step.name))
    if step.tags is not None:
        ctx.parent.set_tags(step.tags(result))
    return result


def _finished(ctx: Context, say: Callable[[str], None]) -> NightlyResult:
    gate, published = ctx.result("gate"), ctx.result("publish")
    verb = "promoted to champion" if gate["promote"] else "published as challenger (held)"
    message = f"bundle {published['version']} {verb}: " + "; ".join(gate["reasons"])
    say(message)
    steps = [
        {"step": r.name, "resumed": r.resumed, "seconds": round(r.seconds, 2)}
        for r in ctx.steps.records
    ]
    return NightlyResult(ctx.run_key, published["version"], gate["promote"], message, steps)


def _parent_run(
    stack: ExitStack, track: bool, config: PipelineConfig, run: runs.RunIdentity, workdir: Path
):
    if not track:
        return tracking.NullTracker()
    tags = {"run_key": run.key, "data_hash": run.data_hash, "config_hash": run.config_hash}
    if run.attempt:  # --force: a new attempt of inputs already published
        tags.update(attempt=run.attempt, base_run_key=run.base_key)
    tags["workdir"] = str(workdir.resolve())  # runs of several work directories in one store
    parent = stack.enter_context(
        tracking.start_run(config.nightly.experiment, "nightly", tags=tags, workdir=workdir)
    )
    parent.log_params(config.model_dump(mode="json"))
    return parent
