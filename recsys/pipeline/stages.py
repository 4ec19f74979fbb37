"""Pipeline: every step function of the nightly job, each writing into its own step directory.

A step takes the `Context` and its output directory and returns a small JSON-able result for the
step manifest. Heavy objects are re-read through the Context from the files earlier steps left,
so a run that resumes after a crash continues from them. The order, the conditions and what each
step provides are the step list in recsys.pipeline.nightly.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys import bundle, tracking
from recsys.config import config_hash
from recsys.data.stats import dataset_stats
from recsys.encoder.embed import EmbeddingCache, embed_texts
from recsys.encoder.features import Featurizer
from recsys.evaluation.report import render_html
from recsys.pipeline import abtest, fit, gc, publish
from recsys.pipeline.context import (
    COLLAB_CACHE,
    EMBEDDING_CACHE,
    ENCODER,
    ENCODERS,
    INDEX,
    ITEM_BIAS,
    ITEM_VECTORS,
    MODEL,
    TRAINED,
    TUNE_CACHE,
    USER_KEYS,
    USER_VECTORS,
    WEIGHTS,
    Context,
)
from recsys.pipeline.gate import decide
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.model import (
    EVALUATED_RANKER_DIR,
    RANKER_DIR,
    RecommenderModel,
    write_model_files,
)
from recsys.ranking.segments import SegmentWeights
from recsys.schema import ITEM_ID, ITEM_IDX
from recsys.text.documents import item_documents, profile_texts

Frame = Callable[[Context], pl.DataFrame]  # which interactions a fitting step fits on
ENCODER_DIR = "encoder"  # the encoder's copy inside the model directory


def train_frame(ctx: Context) -> pl.DataFrame:
    """The split's training interactions: what validation choices (weights, gate) are made on."""
    return ctx.split.train


def all_frame(ctx: Context) -> pl.DataFrame:
    """Every interaction the nightly was given: what the published sources are refitted on."""
    return ctx.dataset.interactions


def shifted_frame(ctx: Context) -> pl.DataFrame:
    """The split's train and valid parts: what the published weights' sources are fitted on,
    so that they stand to the test part as the refitted sources stand to the future."""
    return pl.concat([ctx.split.train, ctx.split.valid])


def validate_step(ctx: Context, out: Path) -> dict[str, Any]:
    return dataset_stats(ctx.dataset)


def split_step(ctx: Context, out: Path) -> dict[str, Any]:
    split = ctx.split
    return {"train": split.train.height, "valid": split.valid.height, "test": split.test.height}


def encoder_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Train the two-tower encoder, or reuse the newest one when retraining is not yet due."""
    from recsys.encoder.model import TwoTowerEncoder
    from recsys.training.train import train_encoder

    enc_config = ctx.config.encoder
    key = config_hash(enc_config)
    reusable = reusable_encoder(ctx.workdir, key, enc_config.retrain_every_days)
    if reusable is not None:
        encoder = TwoTowerEncoder.load(reusable)
        result = {"trained": False, "encoder_dir": str(reusable)}
    else:
        target = ctx.workdir / ENCODERS / f"{time.strftime('%Y%m%dT%H%M%S')}-{key[:8]}"
        train = train_encoder if not _data_parallel(ctx) else _train_on_ranks(ctx, out)
        trained = train(
            ctx.dataset,
            ctx.split,
            enc_config,
            ctx.config.text,
            target,
            tracker=ctx.tracker,
            progress=ctx.progress,
            cache_dir=ctx.feature_cache(),
        )
        (target / TRAINED).write_text(
            json.dumps({"config_hash": key, "trained_at": time.time()}), encoding="utf-8"
        )
        encoder = trained.encoder
        result = {"trained": True, "encoder_dir": str(target), "best_epoch": trained.best_epoch}
    result["encoder_hash"] = encoder.encoder_hash
    return result


def _data_parallel(ctx: Context) -> bool:
    """[compute] backend = "ray" with train_workers > 1: the towers train on Ray Train ranks."""
    return ctx.config.compute.backend == "ray" and ctx.config.compute.train_workers > 1


def _train_on_ranks(ctx: Context, out: Path) -> Callable[..., Any]:
    """train_encoder's signature, trained by DDP ranks; prepared inputs under the step's dir."""
    from functools import partial

    from recsys.training.ddp_encoder import train_encoder_on_ranks

    return partial(train_encoder_on_ranks, compute=ctx.config.compute, scratch=out / "ddp")


def reusable_encoder(workdir: Path, key: str, every_days: int) -> Path | None:
    """Newest encoder trained with the same encoder config less than `every_days` ago."""
    if every_days <= 0:
        return None
    best = None
    for marker in sorted((workdir / ENCODERS).glob(f"*/{TRAINED}")):
        info = json.loads(marker.read_text(encoding="utf-8"))
        fresh = time.time() - info["trained_at"] < every_days * 86400
        if info["config_hash"] == key and fresh:
            best = marker.parent
    return best


def embed_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Item vectors through the item tower; unchanged texts come from the embedding cache, and
    the base model's features of texts frozen training saw from the feature cache."""
    vectors, stats = embed_items(ctx, ctx.encoder(), ctx.encoder_dir())
    np.save(out / ITEM_VECTORS, vectors)
    ctx.tracker.log_metrics(stats.as_metrics())
    return {"items": stats.total, "computed": stats.computed, "reused": stats.reused}


def embed_items(ctx: Context, encoder: Any, encoder_dir: Path) -> tuple[np.ndarray, Any]:
    """Every item document through `encoder`'s item tower (saved in `encoder_dir`), through the
    embedding and feature caches: (n_items, dim) vectors and the cache statistics."""
    documents = item_documents(ctx.dataset, ctx.config.text)
    cache = EmbeddingCache(ctx.workdir / EMBEDDING_CACHE)
    embed_fn = None  # local: this process computes the features the caches lack
    if ctx.config.compute.backend == "ray":
        from recsys.encoder.distributed import remote_item_features

        compute = ctx.config.compute
        embed_fn = remote_item_features(encoder, encoder_dir, ctx.feature_cache(), compute)

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode_items(texts, feature_cache=ctx.feature_cache(), embed_fn=embed_fn)

    vectors, stats = embed_texts(documents, encode, encoder.encoder_hash, cache)  # text vectors
    return encoder.with_id_vectors(vectors, ctx.dataset.item_map.ids), stats


def index_step(ctx: Context, out: Path) -> dict[str, Any]:
    from recsys.index.faiss_index import VectorIndex

    index = VectorIndex.build(ctx.item_vectors(), ctx.config.index, tracker=ctx.tracker)
    index.save(out / INDEX)
    recall = index.build_recall if index.build_recall is not None else 1.0
    ctx.tracker.set_tags({"index_type": index.factory, "ann_recall_at_10": f"{recall:.4f}"})
    return {"factory": index.factory, "recall_at_10": recall, "items": index.ntotal}


def fit_sources_step(frame: Frame) -> Callable[[Context, Path], dict[str, Any]]:
    """The step fitting each blended source of fit.FRAME_SOURCES (fit.fitted_names) on
    `frame(ctx)`, one sub-directory each — or reusing them from an earlier run that fitted the
    same frame, catalog and config."""

    def step(ctx: Context, out: Path) -> dict[str, Any]:
        interactions, config = frame(ctx), ctx.fit_config()
        key = fit.frame_sources_key(ctx.dataset, interactions, config)
        cached = ctx.workdir / COLLAB_CACHE / key
        reused = not ctx.forced and (cached / "done").is_file()  # forced: fit afresh
        if not reused:
            staging = cached.with_name(f".{key}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)  # whole even when no frame source is blended
            names = fit.fitted_names(config)
            fitted = fit.fit_frame_sources(ctx.dataset, interactions, config, names)
            for name, source in fitted.items():
                source.save(staging / name)
            (staging / "done").write_text(key, encoding="utf-8")
            shutil.rmtree(cached, ignore_errors=True)
            staging.rename(cached)
        for name in fit.fitted_names(config):
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(cached / name, out / name)
        model = config.collab.model
        result = {"model": model, "reused": reused, "key": key, "interactions": interactions.height}
        return {**result, "recency": fit.fitted_recency(out, config)}

    return step


def tune_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Choose the collaborative model and its hyperparameters on the split's validation part
    (collab.model "auto" and/or collab.tune); reused from an earlier run with the same training
    part, catalog and config (cache/tune/<key>.json), except by a forced run."""
    key = fit.frame_sources_key(ctx.dataset, ctx.split.train, ctx.config)
    cached = ctx.workdir / TUNE_CACHE / f"{key}.json"
    if not ctx.forced and cached.is_file():
        return {**json.loads(cached.read_text(encoding="utf-8")), "reused": True}
    chosen, scores = fit.tune_collab(ctx.dataset, ctx.split, ctx.config)
    result = {"chosen": chosen.model_dump(mode="json"), "scores": scores, "key": key}
    for point in scores:
        ctx.tracker.log_metrics({_metric_name(point["config"]): point["ndcg"]})
    cached.parent.mkdir(parents=True, exist_ok=True)
    bundle.atomic_write_text(cached, json.dumps(result))  # whole or absent after a crash
    return {**result, "reused": False}


def _metric_name(point: dict[str, Any]) -> str:
    return "valid_ndcg_" + "_".join(f"{name}_{value}" for name, value in sorted(point.items()))


def prior_step(frame: Frame) -> Callable[[Context, Path], dict[str, Any]]:
    """The step writing the text popularity prior of the items `frame(ctx)` never mentions, from
    the base model's features of every item document (read back from the feature cache frozen
    training filled; computed once otherwise)."""

    def step(ctx: Context, out: Path) -> dict[str, Any]:
        encoder = ctx.encoder()
        weight = ctx.config.blend.cold_prior
        interactions = frame(ctx)
        counts = np.bincount(interactions[ITEM_IDX].to_numpy(), minlength=ctx.dataset.n_items)
        cold = int((counts == 0).sum()) if weight > 0 else 0
        ctx.tracker.log_metrics({"cold_prior_items": float(cold)})
        bias = None
        if cold and cold < counts.size:
            featurizer = Featurizer.for_encoder(
                encoder.config,
                encoder.device,
                runtime=encoder.config.runtime,
                cache_dir=ctx.feature_cache(),
            )
            features = featurizer(item_documents(ctx.dataset, ctx.config.text))  # (n, hidden)
            bias = fit.cold_prior(features, interactions, encoder.config, weight)
        if bias is not None:
            np.save(out / ITEM_BIAS, bias)
        return {"cold_items": cold, "prior": bias is not None}

    return step


def weights_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Learn the per-segment blend weights on the split's valid part (or take the fixed ones)."""
    sources, split = ctx.blend_sources(), ctx.split
    weights = fit.learn_blend_weights(sources, ctx.dataset, split.train, split.valid, ctx.config)
    weights.log(ctx.tracker)
    weights.save(out / WEIGHTS)
    return {"weights": weights.to_dict()}


def refit_weights_step(ctx: Context, out: Path) -> dict[str, Any]:
    """The published ranker's weights ([nightly] refit_weights): the frame sources and the
    cold-item prior fitted on train + valid (shifted_frame; through the fitted-source cache),
    the towers as trained — or, where the published towers are refitted (refit_towers), trained
    as many more epochs over train + valid — all scored on the split's test part."""
    fitted = fit_sources_step(shifted_frame)(ctx, out)
    (out / ITEM_BIAS).unlink(missing_ok=True)  # a crashed attempt's; absent: no prior
    if ctx.uses_text:
        prior_step(shifted_frame)(ctx, out)
    history, held_out = shifted_frame(ctx), ctx.split.test
    sources = ctx.blend_sources(at=out)
    towers = None
    if "text" in sources and refit_towers(ctx):
        sources["text"], towers = _shifted_text(ctx, out, sources["text"].item_bias)
    weights = fit.learn_blend_weights(sources, ctx.dataset, history, held_out, ctx.config)
    weights.log(ctx.tracker, prefix="published_blend", scored_on="test")
    weights.save(out / WEIGHTS)
    result = {"weights": weights.to_dict(), "key": fitted["key"], "reused": fitted["reused"]}
    return {**result, "towers": towers}


def _shifted_text(ctx: Context, out: Path, bias: np.ndarray | None) -> tuple[Any, dict[str, Any]]:
    """The text source as the published one will stand (refit_towers_epochs): the evaluated
    towers trained as many more epochs over the split's train + valid parts (shifted_frame),
    with their own item vectors and index, for scoring on the test part they never saw."""
    from recsys.index.faiss_index import VectorIndex

    target = out / ENCODER_DIR
    trained = _continued_towers(ctx, shifted_frame(ctx), target)
    vectors, _ = embed_items(ctx, trained.encoder, target)
    index = VectorIndex.build(vectors, ctx.config.index)
    source = fit.text_source(
        trained.encoder,
        vectors,
        bias=bias,
        index=index,
        exact_max_items=ctx.config.index.exact_max_items,
    )
    facts = {"encoder_hash": trained.encoder.encoder_hash, "epochs": len(trained.history)}
    return source, {**facts, "interactions": shifted_frame(ctx).height}


def _continued_towers(ctx: Context, frame: pl.DataFrame, target: Path) -> Any:
    """The evaluated encoder's towers trained [nightly] refit_towers_epochs more epochs over
    `frame`, saved to `target` (recsys.training.train.continue_training: a TrainResult)."""
    from recsys.training.train import continue_training

    epochs = ctx.config.nightly.refit_towers_epochs
    encoder, text, feature_cache = ctx.encoder(), ctx.config.text, ctx.feature_cache()
    return continue_training(
        encoder, ctx.dataset, frame, text, epochs, target, ctx.tracker, ctx.progress,
        cache_dir=feature_cache,
    )  # fmt: skip


def refit_towers(ctx: Context) -> bool:
    """Are the published text towers refitted ([nightly] refit, refit_towers_epochs > 0, text
    blended, towers on the frozen path)?"""
    nightly = ctx.config.nightly
    wanted = nightly.refit and nightly.refit_towers_epochs > 0 and ctx.uses_text
    return wanted and frozen_towers(ctx)


def frozen_towers(ctx: Context) -> bool:
    """Do the towers train on the frozen path (cached base-model features; the CPU default), the
    only one whose towers the refit continues?"""
    from recsys.encoder import backbone as bb
    from recsys.training.setup import resolve_plan

    config = ctx.config.encoder
    plan = resolve_plan(config, bb.pick_device(config.device), ctx.dataset.n_items)
    return plan.path == "frozen" and config.trainable_layers == 0


def refit_encoder_step(ctx: Context, out: Path) -> dict[str, Any]:
    """The published towers ([nightly] refit_towers_epochs): the evaluated candidate's encoder
    trained that many more epochs over every interaction given, saved in this step's directory;
    the embed, index and users steps after it read it as the encoder. It runs after
    refit_weights, whose scores on the split's test part must come from towers that never saw it."""
    evaluated = ctx.result(ctx.providers[ENCODER])
    target = out / ENCODER_DIR
    trained = _continued_towers(ctx, all_frame(ctx), target)
    return {
        "encoder_dir": str(target),
        "encoder_hash": trained.encoder.encoder_hash,
        "refit_from": evaluated["encoder_hash"],
        "epochs": len(trained.history),
        "interactions": ctx.dataset.interactions.height,
        "seconds": round(trained.seconds, 1),
    }


def users_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Encode every user once from the history the bundle stores (+ profile text), so serving
    answers a known user without running the user tower."""
    per_user = fit.histories(ctx.dataset.interactions, ctx.dataset.n_users)
    profiles = profile_texts(ctx.dataset)
    if ctx.config.compute.backend == "ray":  # user batches on the actor pool
        from recsys.ranking.user_vectors import remote_user_vectors

        files = ctx.encoder_dir(), ctx.output(ITEM_VECTORS)
        vectors = remote_user_vectors(*files, per_user, profiles, ctx.config.compute)
        keys = fit.history_keys(per_user)
    else:
        vectors, keys = fit.known_user_vectors(ctx.blend_sources()["text"], per_user, profiles)
    np.save(out / USER_VECTORS, vectors)
    np.save(out / USER_KEYS, keys)
    return {"known_user_vectors": len(per_user)}


def model_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Write the candidate the gate evaluates, its sources fitted on the split's training part:
    the encoder copied in, every source, the learned weights, ids, items and histories — and,
    when it is what gets published (nightly.refit off), the precomputed top-k."""
    lengths = fit.history_lengths(ctx.split.train, ctx.dataset.n_users)
    precompute = 0 if ctx.config.nightly.refit else ctx.config.serving.precomputed_k
    ranker = _write_model(ctx, out / MODEL, lengths, precompute)
    return {"sources": ranker.names}


def published_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Write the model to publish: the sources refitted on every interaction (the refit steps)
    with the weights chosen on the split; users' segments by their whole history; every user's
    top-k. The evaluated candidate's ranker goes beside it (EVALUATED_RANKER_DIR), so offline
    A/B reports and later gates judge what was fitted without the held-out interactions."""
    lengths = fit.history_lengths(ctx.dataset.interactions, ctx.dataset.n_users)
    model_dir = out / MODEL
    ranker = _write_model(ctx, model_dir, lengths, ctx.config.serving.precomputed_k)
    evaluated = ctx.step_dir("model") / MODEL / RANKER_DIR
    shutil.copytree(evaluated, model_dir / EVALUATED_RANKER_DIR)
    for name in (USER_VECTORS, USER_KEYS):  # only the served ranker answers known users by key
        (model_dir / EVALUATED_RANKER_DIR / "text" / name).unlink(missing_ok=True)
    return {"sources": ranker.names, "refit": ctx.result("refit")["key"]}


def _write_model(ctx: Context, model_dir: Path, lengths: np.ndarray, precompute: int) -> Any:
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a half-written one from a crashed attempt
    model_dir.mkdir(parents=True)
    sources = ctx.blend_sources(model_dir / ENCODER_DIR)
    weights = SegmentWeights.load(ctx.output(WEIGHTS))
    ranker = BlendedRanker(sources, weights, ctx.config.blend, lengths)
    items = ctx.dataset.items.select([ITEM_IDX, ITEM_ID, *ctx.dataset.item_text_columns])
    all_histories = fit.histories(ctx.dataset.interactions, ctx.dataset.n_users)
    users, compute = ctx.dataset.user_map, ctx.config.compute
    write_model_files(model_dir, ranker, items, users, all_histories, precompute, compute)
    return ranker


def evaluate_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Candidate vs the current champion on the same held-out users; the A/B report as an
    artifact. The first run (no champion) evaluates the candidate alone."""
    candidate = RecommenderModel.load(ctx.model_dir(), verify_files=False)
    champion_dir = bundle.current_bundle(ctx.workdir)
    result: dict[str, Any] = {"champion": None}
    if champion_dir is None:
        alone = abtest.evaluate_model(candidate, ctx.dataset, ctx.split, ctx.config)
        means = {name: float(v.mean()) for name, v in alone.metrics.items()}
        result["users"] = int(next(iter(alone.metrics.values())).size)
    else:
        champion = RecommenderModel.load(champion_dir, evaluated=True)  # never a refitted one
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


def gate_step(ctx: Context, out: Path) -> dict[str, Any]:
    evaluation = ctx.result("evaluate")
    decision = decide(
        evaluation["candidate"], evaluation["champion"], ctx.config.gate, evaluation.get("users")
    )
    ctx.tracker.log_metrics({"promoted": float(decision.promote)})
    return decision.to_dict()


def publish_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Copy the model into a staging directory, publish with one rename, move a pointer.

    The version is derived from the run key, so a rerun after a crash between the rename and
    this step's manifest finds its own bundle and only moves the pointer."""
    gate = ctx.result("gate")
    existing = [m for m in bundle.list_bundles(ctx.workdir) if m.get("run_key") == ctx.run_key]
    if existing:
        version = existing[-1]["version"]
    else:
        version = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{ctx.run_key[:8]}"
        fields = publish.manifest_fields(ctx, ctx.result("evaluate")["candidate"], gate)
        with bundle.staging(ctx.workdir, version) as stage:
            publish.copy_tree(ctx.model_dir(), stage)
            publish.save_json(stage / "config.json", ctx.config.model_dump(mode="json"))
            bundle.publish(stage, ctx.workdir, version, fields)
    pointer = "CURRENT" if gate["promote"] else "CHALLENGER"
    if bundle.read_pointer(ctx.workdir, pointer) != version:
        bundle.set_pointer(ctx.workdir, version, pointer, reason="nightly gate")
    return {"version": version, "pointer": pointer}


def register_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Headline metrics on the nightly's parent run, then the bundle logged there as a pyfunc
    model, registered, and the champion (or challenger) alias pointed at it."""
    gate, evaluation = ctx.result("gate"), ctx.result("evaluate")
    alias = "champion" if gate["promote"] else "challenger"
    version = ctx.result("publish")["version"]
    name = tracking.registered_model_name(ctx.workdir, ctx.config.nightly.registered_model)
    ctx.parent.log_metrics(headline_metrics(evaluation, gate, ctx.config.eval.k))
    path = bundle.bundles_dir(ctx.workdir) / version
    reason = "nightly gate: " + "; ".join(gate["reasons"])
    registry_version = tracking.log_bundle_model(ctx.parent, name, version, path, alias, reason)
    return {"registered_model": name, "registry_version": registry_version, "alias": alias}


def headline_metrics(evaluation: dict, gate: dict, k: int) -> dict[str, float]:
    """What compares nights in the MLflow UI: the candidate's (and the champion's) metrics at k
    on the held-out users, how many users, and whether the gate promoted."""
    out = {f"candidate_{name}_at_{k}": v for name, v in evaluation["candidate"].items()}
    for name, value in (evaluation.get("champion") or {}).items():
        out[f"champion_{name}_at_{k}"] = value
    out["eval_users"] = float(evaluation.get("users") or 0)
    out["promoted"] = float(gate["promote"])
    return out


def prune_step(ctx: Context, out: Path) -> dict[str, Any]:
    """The configured retention (recsys.pipeline.gc, as `recsys gc`), this run kept whole."""
    return gc.collect(ctx.workdir, ctx.config, in_progress=ctx.run_key)
