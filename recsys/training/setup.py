"""Training stage: training set-up — resolve the plan, gather texts, sequences, features, trainer.

Reads a Dataset + Split and the base backbone (cached frozen features under cache_dir); writes
the in-memory TrainingData and the trainer (FrozenTrainer or PairTrainer) the loop runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.config import EncoderConfig, TextConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.encoder import backbone as bb
from recsys.encoder.features import Featurizer
from recsys.ids import IdMap
from recsys.schema import ITEM_IDX
from recsys.text.documents import UserDocuments, item_documents, profile_texts
from recsys.training.examples import item_log_q, user_sequences
from recsys.training.frozen import FrozenTrainer
from recsys.training.pair import HardNegatives, PairTrainer
from recsys.training.text_sources import (
    StateSource,
    TokenSource,
    bert_layers,
    top_layer_inputs,
    top_layers_model,
)
from recsys.training.validation import HeldOut, held_out

log = logging.getLogger(__name__)

FULL_SOFTMAX_MAX_ITEMS = 20_000  # auto: above this, in-batch negatives on the frozen path too


@dataclass(frozen=True)
class Plan:
    """What `auto` settings resolved to on this machine."""

    path: str  # "frozen" (cached features; + top layers when trainable_layers > 0) or "full"
    user_tower: str  # "sequence" or "bert"
    softmax: str  # "full" (whole catalog) or "sampled" (in-batch, logQ)


def resolve_plan(config: EncoderConfig, device: str, n_items: int = 0) -> Plan:
    """auto path: full fine-tuning on a GPU, frozen features on CPU; auto user tower: sequence.
    auto softmax: the whole catalog on the frozen path (it validates better than in-batch
    negatives: ml-100k valid NDCG@10 0.084 vs 0.065 after 10 epochs) up to
    FULL_SOFTMAX_MAX_ITEMS items, whose per-step cost grows with the catalog; in-batch else."""
    path = config.path if config.path != "auto" else ("full" if device != "cpu" else "frozen")
    user_tower = config.user_tower if config.user_tower != "auto" else "sequence"
    if user_tower == "bert" and path != "full":
        raise ValueError(
            "encoder.user_tower = 'bert' runs BERT over user documents that change with every "
            f"interaction, so it needs encoder.path = 'full'; found path = {config.path!r} "
            f"(resolved to {path!r} on {device})"
        )
    pair_trained = path == "full" or config.trainable_layers > 0
    softmax = config.softmax
    if softmax == "auto":
        small = n_items <= FULL_SOFTMAX_MAX_ITEMS
        softmax = "full" if not pair_trained and small else "sampled"
    if pair_trained and softmax == "full":
        raise ValueError(
            "encoder.softmax = 'full' needs every item vector at each step: only the frozen path "
            "with trainable_layers = 0 affords it; use softmax = 'sampled' or 'auto'"
        )
    return Plan(path, user_tower, softmax)


@dataclass
class TrainingData:
    item_texts: list[str]
    item_ids: list[str]  # per item_idx
    documents: UserDocuments  # what the BERT user tower reads (recsys.text)
    profile_texts: list[str | None]  # per user_idx
    has_profile: np.ndarray  # (n_users,) bool
    sequences: list[np.ndarray]  # per user_idx, train item_idx oldest first
    valid: HeldOut
    log_q: np.ndarray  # (n_items,) log sampling probability of each item in a batch
    backbone_name: str
    backbone_hash: str
    cache_dir: Path | None
    progress: bool


def prepare_data(
    dataset: Dataset,
    split: Split,
    config: EncoderConfig,
    text_config: TextConfig,
    plan: Plan,
    cache_dir: Path | None,
    device: str,
    progress: bool,
) -> TrainingData:
    texts = item_documents(dataset, text_config)
    if len(texts) != dataset.n_items:
        raise ValueError(f"item_documents returned {len(texts)} texts for {dataset.n_items} items")
    profiles = profile_texts(dataset)
    sequences = user_sequences(split.train, dataset.n_users)
    batch = config.batch_size  # targets per step: pairs, or every position of the sequences
    if plan.path == "frozen" and config.trainable_layers == 0:
        batch = config.seq_batch_size * config.history_len
    return TrainingData(
        item_texts=texts,
        item_ids=dataset.item_map.ids,
        documents=UserDocuments.for_dataset(dataset, text_config),
        profile_texts=profiles,
        has_profile=np.array([p is not None for p in profiles], dtype=bool),
        sequences=sequences,
        valid=held_out(sequences, split.valid),
        log_q=item_log_q(split.train[ITEM_IDX].to_numpy(), dataset.n_items, batch),
        backbone_name=config.model_name_or_path,
        backbone_hash=bb.model_hash(config.model_name_or_path),
        cache_dir=cache_dir,
        progress=progress,
    )


def build_trainer(
    data: TrainingData,
    config: EncoderConfig,
    plan: Plan,
    device: str,
    hard_negatives: HardNegatives | None,
    id_vocab: Sequence[str] | None = None,
) -> FrozenTrainer | PairTrainer:
    """The trainer of the plan's path. id_vocab: the id-vector rows of an encoder whose training
    continues (continue_training); None: chosen from data by config.id_vectors_min_count."""
    if id_vocab is None:
        id_vocab = id_vocabulary(data, config.id_vectors_min_count)
    rows = IdMap(id_vocab).to_indices(data.item_ids)  # each item's id-vector row, -1: none
    if plan.path == "frozen" and config.trainable_layers == 0:
        return _frozen_trainer(data, config, plan, device, rows, id_vocab)
    tokenizer, bert = bb.load_backbone(config.model_name_or_path, device)
    if plan.path == "full":
        _freeze_bottom(bert, config.freeze_bottom_layers)
        items = TokenSource(tokenizer, bert, data.item_texts, config.max_length)
        profiles = _profile_tokens(tokenizer, bert, data, config.user_max_length)
    else:
        items, profiles = _state_sources(tokenizer, bert, data, config, device)
    bert.train()
    return PairTrainer(
        config,
        bert,
        tokenizer,
        items,
        profiles,
        data.sequences,
        data.has_profile,
        plan.user_tower,
        device,
        data.log_q,
        hard_negatives,
        data.documents,
        data.profile_texts,
        rows,
        id_vocab,
    )


def frozen_features(
    data: TrainingData, config: EncoderConfig, device: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled base-model features of every item (n_items, hidden) and of every user's profile
    (n_users, hidden; zero rows without one; None when nobody has one), from the cache first."""
    # the backbone loads only when some text is not cached yet, and once for items and profiles
    features = Featurizer.for_encoder(
        config, device, runtime=config.runtime, cache_dir=data.cache_dir, progress=data.progress
    )
    items = features(data.item_texts)
    profiles = None
    if data.has_profile.any():
        profiles = np.zeros((len(data.profile_texts), items.shape[1]), dtype=np.float32)
        texts = [p for p in data.profile_texts if p is not None]
        profiles[data.has_profile] = features.with_max_length(config.user_max_length)(texts)
    return items, profiles


def _frozen_trainer(
    data: TrainingData,
    config: EncoderConfig,
    plan: Plan,
    device: str,
    id_rows: np.ndarray,
    id_vocab: Sequence[str],
):
    items, profiles = frozen_features(data, config, device)
    return FrozenTrainer(
        config, items, data.sequences, profiles, data.has_profile, device, plan.softmax, data.log_q,
        id_rows, id_vocab,
    )  # fmt: skip


def id_vocabulary(data: TrainingData, min_count: int) -> list[str]:
    """Item ids with at least min_count training interactions, in item_idx order ([] at 0)."""
    if min_count <= 0:
        return []
    seen = [np.asarray(s, np.int64) for s in data.sequences]
    counts = np.bincount(
        np.concatenate(seen or [np.zeros(0, np.int64)]), minlength=len(data.item_ids)
    )
    return [data.item_ids[i] for i in np.flatnonzero(counts >= min_count)]


def _freeze_bottom(bert: torch.nn.Module, n_layers: int) -> None:
    """Freeze the embeddings and the bottom n layers (n = 0: everything trains)."""
    if n_layers <= 0:
        return
    layers = bert_layers(bert)
    if n_layers > len(layers):
        raise ValueError(f"freeze_bottom_layers = {n_layers}, the model has {len(layers)} layers")
    for module in [bert.embeddings, *layers[:n_layers]]:
        module.requires_grad_(False)


def _profile_tokens(tokenizer, bert, data: TrainingData, max_length: int) -> TokenSource | None:
    if not data.has_profile.any():
        return None
    texts = [p or "" for p in data.profile_texts]
    return TokenSource(tokenizer, bert, texts, max_length)


def _state_sources(tokenizer, bert, data: TrainingData, config: EncoderConfig, device: str):
    """CPU path with trainable_layers = k: cached states entering the top k layers."""
    k = config.trainable_layers
    bert.requires_grad_(False)
    top = top_layers_model(bert, k)
    for layer in top.encoder.layer:
        layer.requires_grad_(True)

    def states(texts: list[str], max_length: int) -> StateSource:
        base = Featurizer.for_encoder(
            config,
            device,
            max_length,
            cache_dir=data.cache_dir,
            loader=lambda: (tokenizer, bert.eval()),
        )
        cached = top_layer_inputs(base, texts, k)
        return StateSource(top, *cached)

    items = states(data.item_texts, config.max_length)
    profiles = None
    if data.has_profile.any():
        profiles = states([p or "" for p in data.profile_texts], config.user_max_length)
    return items, profiles
