"""Pipeline: the nightly job's steps, each writing its outputs into its own step directory.

Every function takes a `Context` and the step's output directory and returns a small JSON-able
result for the step manifest. Heavy objects are re-read from the step directories, so a run that
resumes after a crash continues from the files earlier steps left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import PipelineConfig, config_hash
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.encoder.embed import EmbeddingCache, embed_texts
from recsys.encoder.features import Featurizer
from recsys.index.faiss_index import VectorIndex
from recsys.pipeline import fit
from recsys.ranking.base import Query
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.model import RecommenderModel, write_model_files
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.prior import cold_item_bias
from recsys.ranking.user_vectors import TowerUserEncoder, history_key
from recsys.schema import ITEM_ID, ITEM_IDX
from recsys.text.documents import item_documents
from recsys.tracking import NullTracker, Tracker
from recsys.training.setup import profile_texts

ENCODER_DIR = "encoder"


@dataclass
class Context:
    """What every step may read: the data, the split, config, work directory and tracker."""

    dataset: Dataset
    split: Split
    config: PipelineConfig
    workdir: Path
    run_dir: Path
    tracker: Tracker = field(default_factory=NullTracker)
    progress: bool = True
    run_id: str | None = None  # the nightly's parent MLflow run

    def step_dir(self, name: str) -> Path:
        return self.run_dir / name


FEATURE_CACHE = "feature-cache"  # train_encoder's default cache_dir, beside the encoders


def encoder_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Train the two-tower encoder, or reuse the newest one when retraining is not yet due."""
    from recsys.encoder.model import TwoTowerEncoder
    from recsys.training.train import train_encoder

    enc_config = ctx.config.encoder
    key = config_hash(enc_config)
    reusable = _reusable_encoder(ctx.workdir, key, enc_config.retrain_every_days)
    if reusable is not None:
        encoder = TwoTowerEncoder.load(reusable)
        result = {"trained": False, "encoder_dir": str(reusable)}
    else:
        target = ctx.workdir / "encoders" / f"{time.strftime('%Y%m%dT%H%M%S')}-{key[:8]}"
        trained = train_encoder(
            ctx.dataset,
            ctx.split,
            enc_config,
            ctx.config.text,
            target,
            tracker=ctx.tracker,
            progress=ctx.progress,
            cache_dir=ctx.workdir / "encoders" / FEATURE_CACHE,
        )
        (target / "trained.json").write_text(
            json.dumps({"config_hash": key, "trained_at": time.time()}), encoding="utf-8"
        )
        encoder = trained.encoder
        result = {"trained": True, "encoder_dir": str(target), "best_epoch": trained.best_epoch}
    result["encoder_hash"] = encoder.encoder_hash
    return result


def _reusable_encoder(workdir: Path, key: str, every_days: int) -> Path | None:
    """Newest encoder trained with the same encoder config less than `every_days` ago."""
    if every_days <= 0:
        return None
    best = None
    for marker in sorted((workdir / "encoders").glob("*/trained.json")):
        info = json.loads(marker.read_text(encoding="utf-8"))
        fresh = time.time() - info["trained_at"] < every_days * 86400
        if info["config_hash"] == key and fresh:
            best = marker.parent
    return best


def load_encoder(ctx: Context):
    from recsys.encoder.model import TwoTowerEncoder

    done = json.loads((ctx.run_dir / "steps" / "encoder.json").read_text(encoding="utf-8"))
    return TwoTowerEncoder.load(Path(done["result"]["encoder_dir"]))


def embed_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Item vectors through the item tower; unchanged texts come from the embedding cache."""
    encoder = load_encoder(ctx)
    documents = item_documents(ctx.dataset, ctx.config.text)
    cache = EmbeddingCache(ctx.workdir / "cache" / "embeddings")
    features = ctx.workdir / "encoders" / FEATURE_CACHE  # what frozen training already embedded

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode_items(texts, feature_cache=features)

    vectors, stats = embed_texts(documents, encode, encoder.encoder_hash, cache)
    np.save(out / "item_vectors.npy", vectors)
    ctx.tracker.log_metrics(stats.as_metrics())
    return {"items": stats.total, "computed": stats.computed, "reused": stats.reused}


def index_step(ctx: Context, out: Path) -> dict[str, Any]:
    vectors = np.load(ctx.step_dir("embed") / "item_vectors.npy", allow_pickle=False)
    index = VectorIndex.build(vectors, ctx.config.index, tracker=ctx.tracker)
    index.save(out / "index.faiss")
    recall = index.build_recall if index.build_recall is not None else 1.0
    ctx.tracker.set_tags({"index_type": index.factory, "ann_recall_at_10": f"{recall:.4f}"})
    return {"factory": index.factory, "recall_at_10": recall, "items": index.ntotal}


def collab_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Fit the collaborative model and popularity — or reuse them from an earlier run whose
    training interactions, item catalog and collab config were the same (cache by hash)."""
    key = _collab_key(ctx)
    cached = ctx.workdir / "cache" / "collab" / key
    reused = (cached / "done").is_file()
    if not reused:
        staging = cached.with_name(f".{key}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        fit.fit_collab(ctx.dataset, ctx.split.train, ctx.config).save(staging / "collab")
        fit.fit_popularity(ctx.dataset, ctx.split.train).save(staging / "popularity")
        (staging / "done").write_text(key, encoding="utf-8")
        shutil.rmtree(cached, ignore_errors=True)
        staging.rename(cached)
    for name in ("collab", "popularity"):
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(cached / name, out / name)
    return {"model": ctx.config.collab.model, "reused": reused, "key": key}


def _collab_key(ctx: Context) -> str:
    """Hash of what the collaborative fit depends on: train interactions, ids, config."""
    digest = hashlib.sha256(config_hash(ctx.config.collab).encode())
    train = ctx.split.train.select(["user_idx", "item_idx", "timestamp"])
    digest.update(train.hash_rows(seed=0).to_numpy().tobytes())
    digest.update("\n".join(ctx.dataset.item_map.ids).encode())
    digest.update("\n".join(ctx.dataset.user_map.ids).encode())
    if ctx.config.collab.item_features:  # hybrid features come from item text
        digest.update("\n".join(item_documents(ctx.dataset, ctx.config.text)).encode())
    return digest.hexdigest()[:16]


def sources(ctx: Context, model_dir: Path) -> dict[str, Any]:
    """The fitted sources, with the encoder copied inside model_dir so the bundle is whole."""
    names = ctx.config.blend.sources
    out: dict[str, Any] = {}
    if "text" in names:
        encoder = load_encoder(ctx)
        encoder.save(model_dir / ENCODER_DIR)
        vectors = np.load(ctx.step_dir("embed") / "item_vectors.npy", allow_pickle=False)
        index = VectorIndex.load(ctx.step_dir("index") / "index.faiss", ctx.config.index)
        user_encoder = TowerUserEncoder(encoder, model_dir / ENCODER_DIR)
        out["text"] = ContentRecommender(
            vectors, user_encoder, index, exact_max_items=ctx.config.index.exact_max_items,
            item_bias=_cold_item_bias(ctx, encoder),
        )  # fmt: skip
    if "collab" in names:
        out["collab"] = CollabRecommender.load(ctx.step_dir("collab") / "collab")
    if "popularity" in names:
        out["popularity"] = PopularityRecommender.load(ctx.step_dir("collab") / "popularity")
    return out


def _cold_item_bias(ctx: Context, encoder: Any) -> np.ndarray | None:
    """The text-predicted popularity prior of the items without training interactions
    (recsys.ranking.prior), from the base model's pooled features of every item document (read
    back from the feature cache the frozen training path filled; computed once otherwise)."""
    weight = ctx.config.blend.cold_prior
    counts = np.bincount(ctx.split.train[ITEM_IDX].to_numpy(), minlength=ctx.dataset.n_items)
    cold = int((counts == 0).sum())
    ctx.tracker.log_metrics({"cold_prior_items": float(cold if weight > 0 else 0)})
    if weight == 0 or cold == 0 or cold == counts.size:
        return None
    enc = encoder.config
    featurizer = Featurizer.for_encoder(
        enc, encoder.device, runtime=enc.runtime, cache_dir=ctx.workdir / "encoders" / FEATURE_CACHE
    )
    features = featurizer(item_documents(ctx.dataset, ctx.config.text))  # (n_items, hidden)
    return cold_item_bias(features, counts, enc.temperature * weight)


def blend_step(ctx: Context, out: Path) -> dict[str, Any]:
    """Learn the per-segment weights and write the complete serving model (bundle contents)."""
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a half-written one from a crashed attempt
    model_dir.mkdir(parents=True)
    ranker = fit.fit_blend(sources(ctx, model_dir), ctx.dataset, ctx.split, ctx.config)
    ranker.weights.log(ctx.tracker)
    items = ctx.dataset.items.select([ITEM_IDX, ITEM_ID, *ctx.dataset.item_text_columns])
    all_histories = fit.histories(ctx.dataset.interactions, ctx.dataset.n_users)
    known = _known_user_vectors(ctx, ranker, all_histories)
    write_model_files(
        model_dir, ranker, items, ctx.dataset.user_map, all_histories,
        precompute_k=ctx.config.serving.precomputed_k,
    )  # fmt: skip
    return {"weights": ranker.weights.to_dict(), "known_user_vectors": known}


def _known_user_vectors(ctx: Context, ranker: Any, all_histories: list[np.ndarray]) -> int:
    """Encode every user once from the history the bundle stores (+ profile text), so serving
    answers a known user without running the user tower; returns how many were encoded."""
    text = ranker.sources.get("text")
    if not isinstance(text, ContentRecommender) or not isinstance(
        text.user_encoder, TowerUserEncoder
    ):
        return 0
    profiles = profile_texts(ctx.dataset)
    queries = [Query(u, h, p) for u, (h, p) in enumerate(zip(all_histories, profiles, strict=True))]
    vectors = text.user_encoder(queries, text.item_vectors)  # batched by the encoder
    keys = np.array([history_key(h) for h in all_histories], dtype=np.uint64)
    text.set_known_users(vectors, keys)
    return len(all_histories)


def candidate_model(ctx: Context) -> RecommenderModel:
    return RecommenderModel.load(ctx.step_dir("blend") / "model", verify_files=False)


def test_users(ctx: Context) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Held-out users by external id: their history before the test part, and the test items."""
    ds = ctx.dataset
    held = fit.eval_set([ctx.split.train, ctx.split.valid], ctx.split.test, ds.n_users)
    users = ds.user_map.to_ids(held.user_idx)
    history = [ds.item_map.to_ids(q.history) for q in held.queries]
    relevant = [ds.item_map.to_ids(r) for r in held.relevant]
    return users, history, relevant


def save_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
