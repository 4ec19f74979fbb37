"""Pipeline: fit every source on an interaction frame, assemble the text source, learn the blend
weights — shared by the nightly job, the stage commands and the quality benchmark, so they all
build their recommenders the same way.

Reads a Dataset, an interaction frame (a split's train part, or every interaction) and the
encoder's outputs; returns fitted recommenders and SegmentWeights (saved by the caller).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.config import CollabConfig, EncoderConfig, PipelineConfig, config_hash
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.ranking.base import Query, Recommender
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.item_graph import ItemGraphRecommender
from recsys.ranking.neighbors import NeighborsRecommender
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.prior import cold_item_bias
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.transitions import TransitionsRecommender
from recsys.ranking.user_vectors import TowerUserEncoder, history_key
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.text.documents import item_documents
from recsys.training import collab_tuning
from recsys.training.blend_weights import learn_weights
from recsys.training.recency import choose_recency


def histories(frame: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """Per user_idx, the item_idx of `frame` in its (time) order. frame is sorted by user."""
    out = [np.zeros(0, dtype=np.int64) for _ in range(n_users)]
    if frame.height == 0:
        return out
    grouped = frame.group_by(USER_IDX, maintain_order=True).agg(pl.col(ITEM_IDX))
    for user_idx, items in zip(
        grouped[USER_IDX].to_list(), grouped[ITEM_IDX].to_list(), strict=True
    ):
        out[user_idx] = np.asarray(items, dtype=np.int64)
    return out


@dataclass(frozen=True)
class EvalSet:
    """Held-out queries: each user's history before the held-out part, and what came next."""

    user_idx: np.ndarray  # (n,)
    queries: list[Query]
    relevant: list[np.ndarray]
    exclude: list[np.ndarray]


def eval_set(history_frames: list[pl.DataFrame], held_out: pl.DataFrame, n_users: int) -> EvalSet:
    """Queries for users with held-out interactions; history = the concatenated frames."""
    history = pl.concat(history_frames).sort([USER_IDX, TIMESTAMP, ROW])
    per_user = histories(history, n_users)
    relevant = histories(held_out, n_users)
    users = np.array([u for u in range(n_users) if relevant[u].size], dtype=np.int64)
    queries = [Query(int(u), per_user[u]) for u in users]
    return EvalSet(users, queries, [relevant[u] for u in users], [per_user[u] for u in users])


def matrix(frame: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """(n_users, n_items) binary interaction matrix of a frame (every interaction a positive)."""
    rows = frame[USER_IDX].to_numpy()
    cols = frame[ITEM_IDX].to_numpy()
    values = np.ones(len(rows), dtype=np.float32)
    out = sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items))
    out.data[:] = 1.0  # repeats count once
    return out


def history_lengths(frame: pl.DataFrame, n_users: int) -> np.ndarray:
    """(n_users,) interactions per user in `frame`: the blend's segment of a known user."""
    return np.array([h.size for h in histories(frame, n_users)])


def fit_popularity(
    dataset: Dataset, frame: pl.DataFrame, config: PipelineConfig | None = None
) -> PopularityRecommender:
    return PopularityRecommender.fit(matrix(frame, dataset.n_users, dataset.n_items))


def fit_collab(dataset: Dataset, frame: pl.DataFrame, config: PipelineConfig) -> CollabRecommender:
    """LightFM or ALS; with collab.item_features, LightFM's hybrid mode over item text tokens."""
    features = None
    if config.collab.item_features:
        from recsys.collab.features import item_token_features

        features = item_token_features(dataset)[0]
    interactions = matrix(frame, dataset.n_users, dataset.n_items)
    return CollabRecommender.fit(interactions, config.collab, item_features=features)


FrameFit = Callable[[Dataset, pl.DataFrame, PipelineConfig], Recommender]


def item_graph_fit(kind: type[ItemGraphRecommender], section: str) -> FrameFit:
    """The fit of an item-graph source (recsys.ranking.item_graph) from config [section]; its
    recency "auto" is chosen on the frame itself (its users' newest interactions held out). The
    nightly chooses it on the split's training part only and fits the refit frames with that
    choice (Context.fit_config), as it does every other hyperparameter."""

    def fit(dataset: Dataset, frame: pl.DataFrame, config: PipelineConfig) -> ItemGraphRecommender:
        settings = getattr(config, section)
        n_users, n_items = dataset.n_users, dataset.n_items
        if settings.recency == "auto":
            chosen, _ = choose_recency(frame, n_users, n_items, settings, kind)
            settings = settings.model_copy(update={"recency": chosen})
        return kind.fit_frame(frame, n_users, n_items, settings)

    return fit


@dataclass(frozen=True)
class FrameSource:
    """How the nightly fits a source on an interaction frame (the text source is built from the
    encoder's steps instead: text_source): `fit` it, `kind.load` it back from the directory it
    was saved to. `config` names the PipelineConfig sections the fit reads: with the frame and
    the ids they key the fitted-source cache."""

    fit: FrameFit
    kind: type[Recommender]
    config: tuple[str, ...] = ()


FRAME_SOURCES: dict[str, FrameSource] = {
    "collab": FrameSource(fit_collab, CollabRecommender, ("collab",)),
    "popularity": FrameSource(fit_popularity, PopularityRecommender),
    "neighbors": FrameSource(
        item_graph_fit(NeighborsRecommender, "neighbors"), NeighborsRecommender, ("neighbors",)
    ),
    "transitions": FrameSource(
        item_graph_fit(TransitionsRecommender, "transitions"),
        TransitionsRecommender,
        ("transitions",),
    ),
}


def fitted_names(config: PipelineConfig) -> list[str]:
    """The FRAME_SOURCES the nightly fits: those blended (an opt-in source costs nothing off)."""
    return [name for name in FRAME_SOURCES if name in config.blend.sources]


def frame_sources_key(dataset: Dataset, frame: pl.DataFrame, config: PipelineConfig) -> str:
    """Hash of what the FRAME_SOURCES fitted on `frame` depend on: the interactions, the ids and
    their config sections (the key of the fitted-source cache)."""
    names = fitted_names(config)
    sections = [s for name in names for s in FRAME_SOURCES[name].config]
    blob = ",".join(names) + "".join(config_hash(getattr(config, s)) for s in sections)
    digest = hashlib.sha256(blob.encode())
    rows = frame.select([USER_IDX, ITEM_IDX, TIMESTAMP])
    digest.update(rows.hash_rows(seed=0).to_numpy().tobytes())
    digest.update("\n".join(dataset.item_map.ids).encode())
    digest.update("\n".join(dataset.user_map.ids).encode())
    if config.collab.item_features:  # hybrid features come from item text
        digest.update("\n".join(item_documents(dataset, config.text)).encode())
    return digest.hexdigest()[:16]


def item_graph_names(config: PipelineConfig) -> list[str]:
    """The fitted sources that are item graphs (a [section] with a recency decay)."""
    names = fitted_names(config)
    return [n for n in names if issubclass(FRAME_SOURCES[n].kind, ItemGraphRecommender)]


def fitted_recency(directory: Path, config: PipelineConfig) -> dict[str, float]:
    """The recency of each item-graph source fitted into `directory` (its "auto" resolved):
    what the refit frames are fitted with once the split's training part chose it."""
    kinds = {name: FRAME_SOURCES[name].kind for name in item_graph_names(config)}
    return {name: float(kind.load(directory / name).config.recency) for name, kind in kinds.items()}


def with_recency(config: PipelineConfig, chosen: dict[str, float]) -> PipelineConfig:
    """`config` with each item-graph source's recency "auto" replaced by the value `chosen` for
    it (fitted_recency of the split's training part); explicit values stay."""
    update = {}
    for name, recency in chosen.items():
        settings = getattr(config, name)
        if settings.recency == "auto":
            update[name] = settings.model_copy(update={"recency": recency})
    return config.model_copy(update=update) if update else config


def fit_frame_sources(
    dataset: Dataset, frame: pl.DataFrame, config: PipelineConfig, names: Sequence[str]
) -> dict[str, Recommender]:
    """Every named source fitted on `frame` (names without a FrameSource are skipped)."""
    return {n: FRAME_SOURCES[n].fit(dataset, frame, config) for n in names if n in FRAME_SOURCES}


def cold_prior(
    features: np.ndarray, frame: pl.DataFrame, encoder: EncoderConfig, weight: float
) -> np.ndarray | None:
    """The text popularity prior (recsys.ranking.prior) of the items `frame` never mentions,
    from base-model features (n_items, hidden), in the towers' cosine units x `weight`; None
    when it is off or there is nothing to predict (no item, or every item, without interactions)."""
    counts = np.bincount(frame[ITEM_IDX].to_numpy(), minlength=features.shape[0])  # (n_items,)
    cold = int((counts == 0).sum())
    if weight == 0 or cold == 0 or cold == counts.size:
        return None
    return cold_item_bias(features, counts, encoder.temperature * weight)


def text_source(
    encoder: Any,
    item_vectors: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    index: Any | None = None,
    exact_max_items: int = 100_000,
    encoder_dir: Path | None = None,
) -> ContentRecommender:
    """The content recommender over trained towers: item vectors (n_items, dim) from the item
    tower, users encoded by the user tower (recorded as `encoder_dir` when the encoder is saved
    with the model), the cold-item prior `bias`, FAISS `index` for large catalogs."""
    user_encoder = TowerUserEncoder(encoder, encoder_dir)
    return ContentRecommender(
        item_vectors, user_encoder, index, exact_max_items=exact_max_items, item_bias=bias
    )


def known_user_vectors(
    source: ContentRecommender, per_user: list[np.ndarray], profiles: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Every user encoded once by the source's user tower from their history (+ profile text),
    and the history_key of each: vectors (n_users, dim), keys (n_users,) uint64. Serving then
    answers a known user with that exact history without running the tower."""
    queries = [Query(u, h, p) for u, (h, p) in enumerate(zip(per_user, profiles, strict=True))]
    vectors = source.user_encoder(queries, source.item_vectors)  # (n_users, dim), batched
    return vectors, history_keys(per_user)


def history_keys(per_user: Sequence[np.ndarray]) -> np.ndarray:
    """(n_users,) uint64 history_key of each user's history."""
    return np.array([history_key(h) for h in per_user], dtype=np.uint64)


def tune_collab(
    dataset: Dataset, split: Split, config: PipelineConfig
) -> tuple[CollabConfig, list[dict[str, Any]]]:
    """The [collab] config with the best validation NDCG@k (recsys.training.collab_tuning):
    candidates fitted on the split's training part, scored on its validation part."""
    features = None
    if config.collab.item_features:
        from recsys.collab.features import item_token_features

        features = item_token_features(dataset)[0]
    valid = eval_set([split.train], split.valid, dataset.n_users)
    train = matrix(split.train, dataset.n_users, dataset.n_items)
    return collab_tuning.tune_collab(
        train, valid.queries, valid.relevant, config.collab, config.eval.k, features
    )


def learn_blend_weights(
    sources: dict[str, Recommender],
    dataset: Dataset,
    history: pl.DataFrame,
    held_out: pl.DataFrame,
    config: PipelineConfig,
) -> SegmentWeights:
    """Weights learned on `held_out` (queries = `history`'s histories, its items excluded; the
    split's valid part for the evaluated candidate); fixed ones if set."""
    bounds = config.blend.segment_bounds
    if config.blend.fixed_weights is not None:
        return SegmentWeights.fixed(config.blend.fixed_weights, bounds)
    if held_out.height == 0:
        return SegmentWeights.uniform(list(config.blend.sources), bounds)
    rounds = eval_set([history], held_out, dataset.n_users)
    lengths = history_lengths(history, dataset.n_users)
    return learn_weights(
        sources,
        rounds.queries,
        rounds.relevant,
        rounds.exclude,
        config.blend,
        k=config.eval.k,
        user_history_len=lengths,
    )
