"""Training stage: train the two-tower encoder — the epoch loop, validation, checkpoints, tracking.

Reads a Dataset + Split (train sequences, valid held-out items); writes the encoder directory
(TwoTowerEncoder.save) under out_dir, atomic per-epoch checkpoints under out_dir/checkpoint/
(removed when training completes) and cached frozen features under cache_dir.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.config import EncoderConfig, TextConfig, config_hash
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.encoder import backbone as bb
from recsys.encoder.model import TwoTowerEncoder
from recsys.tracking import NullTracker, Tracker
from recsys.training import checkpoint as ckpt
from recsys.training.setup import Plan, TrainingData, build_trainer, prepare_data, resolve_plan
from recsys.training.validation import VALID_K, ranking_metrics

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint/last.safetensors"
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    encoder: TwoTowerEncoder
    history: list[dict[str, float]]  # one record per epoch: loss, valid recall/ndcg, seconds
    best_epoch: int
    examples_per_second: float
    seconds: float
    device: str
    path: Path  # the saved encoder directory
    plan: Plan | None = None


@dataclass
class Progress:
    """What a checkpoint restores besides weights: the loop's own state."""

    epoch: int = 0  # epochs completed
    best_epoch: int = -1
    best_score: float = -1.0
    bad_epochs: int = 0
    seconds: float = 0.0  # training time so far (excludes validation)
    examples: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def improved(self, score: float, has_valid: bool) -> bool:
        """Book one finished epoch; True when it is the best so far (always, without
        validation users: then training runs to the end and keeps the last epoch)."""
        better = self.best_epoch < 0 or not has_valid or score > self.best_score
        if better:
            self.best_epoch, self.best_score, self.bad_epochs = self.epoch, score, 0
        else:
            self.bad_epochs += 1
        self.epoch += 1
        return better


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; returns the generator that orders the examples."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train_encoder(
    dataset: Dataset,
    split: Split,
    config: EncoderConfig,
    text_config: TextConfig,
    out_dir: Path,
    tracker: Tracker | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    cache_dir: Path | None = None,
    hard_negatives: Callable[[np.ndarray], np.ndarray] | None = None,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    """Train the towers on split.train, early-stop on split.valid NDCG@10, save to out_dir.

    cache_dir holds the frozen BERT features (default: <out_dir>/../feature-cache), so reruns
    skip BERT. resume=True continues from out_dir/checkpoint when one exists (the config must be
    the same). hard_negatives(user_idx (b,)) -> item_idx (b, h) feeds mined negatives to the
    in-batch loss. on_epoch_end(epoch, record) runs after each epoch's checkpoint is written.
    tracker: where parameters and metrics go (None: a fresh NullTracker, nothing recorded)."""
    tracker = NullTracker() if tracker is None else tracker
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir.parent / "feature-cache"
    device = bb.pick_device(config.device)
    plan = resolve_plan(config, device, dataset.n_items)
    rng = seed_everything(config.seed)
    data = prepare_data(dataset, split, config, text_config, plan, cache_dir, device, progress)
    trainer = build_trainer(data, config, plan, device, hard_negatives)
    _log_start(tracker, config, plan, device, data)
    state = Progress()
    checkpoint = out_dir / CHECKPOINT
    best: dict[str, torch.Tensor] | None = None
    if resume and checkpoint.is_file():
        state, best = _restore(checkpoint, trainer, rng, config)
        log.info("resuming encoder training after epoch %d from %s", state.epoch, checkpoint)
    deadline = time.monotonic() + config.max_minutes * 60.0 - state.seconds
    while state.epoch < config.epochs and state.bad_epochs < config.patience:
        record = _run_epoch(trainer, data, rng, deadline, state)
        if state.improved(record["valid_ndcg"], has_valid=len(data.valid.users) > 0):
            best = _snapshot(trainer)
        metrics = {f"encoder_{k}": v for k, v in record.items() if k != "epoch"}
        tracker.log_metrics(metrics, step=state.epoch - 1)
        _save_checkpoint(checkpoint, trainer, rng, state, best, config)
        if progress:
            log.info("encoder epoch %d: %s", state.epoch - 1, json.dumps(record))
        if on_epoch_end is not None:
            on_epoch_end(state.epoch - 1, record)
        if time.monotonic() > deadline:
            log.warning("encoder training stopped at max_minutes = %s", config.max_minutes)
            break
    trainer.modules.load_state_dict(best)
    return _finish(trainer, data, plan, state, device, out_dir, tracker)


def continue_training(
    encoder: TwoTowerEncoder,
    dataset: Dataset,
    interactions: pl.DataFrame,
    text_config: TextConfig,
    epochs: int,
    out_dir: Path,
    tracker: Tracker | None = None,
    progress: bool = False,
    *,
    cache_dir: Path | None = None,
) -> TrainResult:
    """A trained frozen-path encoder's towers trained `epochs` more epochs over `interactions`
    (for publishing: every interaction given, the newest ones the split held out included),
    saved to out_dir. Nothing is held out, so nothing early-stops: the epochs run to the end
    (or to encoder.max_minutes); the evaluated training chose how long the towers train, this
    only shows them what it held out. Same config and seed as `encoder`; a fresh optimizer."""
    config = encoder.config
    device = bb.pick_device(config.device)
    plan = resolve_plan(config, device, dataset.n_items)
    if encoder.training_path != "frozen" or plan.path != "frozen" or config.trainable_layers:
        raise ValueError(
            "continue_training: expected a frozen-path encoder (encoder.path frozen, or auto on "
            f"a CPU, and trainable_layers = 0), found training path {encoder.training_path!r}, "
            f"plan {plan.path!r}, trainable_layers {config.trainable_layers}"
        )
    if epochs < 1:
        raise ValueError(f"continue_training: expected epochs >= 1, found {epochs}")
    tracker = NullTracker() if tracker is None else tracker
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(out_dir).parent / "feature-cache"
    rng = seed_everything(config.seed)
    nothing = interactions.head(0)
    split = Split(interactions, nothing, nothing)  # every interaction trains; none validates
    data = prepare_data(dataset, split, config, text_config, plan, cache_dir, device, progress)
    trainer = build_trainer(data, config, plan, device, None, id_vocab=encoder.id_vocab or [])
    trainer.modules["adapter"].load_state_dict(encoder.adapter.state_dict())
    trainer.modules["user"].load_state_dict(encoder.user_tower.state_dict())
    if encoder.ids is not None:  # the same rows: new items stay text-only, as in serving
        trainer.modules["ids"].load_state_dict(encoder.ids.state_dict())
    state = Progress()
    deadline = time.monotonic() + config.max_minutes * 60.0
    while state.epoch < epochs:
        record = _run_epoch(trainer, data, rng, deadline, state)
        state.improved(record["valid_ndcg"], has_valid=False)  # keeps the last epoch
        tracker.log_metrics({"refit_encoder_loss": record["loss"]}, step=state.epoch - 1)
        if time.monotonic() > deadline:
            log.warning("encoder refit stopped at max_minutes = %s", config.max_minutes)
            break
    return _finish(trainer, data, plan, state, device, Path(out_dir), tracker)


def _run_epoch(trainer, data: TrainingData, rng, deadline: float, state: Progress) -> dict:
    start = time.monotonic()
    loss, examples = trainer.run_epoch(rng, deadline)
    seconds = time.monotonic() - start
    state.seconds += seconds
    state.examples += examples
    metrics = {"recall": float("nan"), "ndcg": 0.0}
    if len(data.valid.users):
        users = trainer.user_vectors(data.valid.users, data.valid.histories)
        metrics = ranking_metrics(users, trainer.item_vectors(), data.valid, VALID_K)
    record = {"epoch": float(state.epoch), "loss": loss, "examples": float(examples)}
    record.update({f"valid_{name}": value for name, value in metrics.items()})
    record["examples_per_second"] = examples / max(seconds, 1e-9)
    state.history.append(record)
    return record


def _snapshot(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.modules.state_dict().items()}


def _save_checkpoint(path: Path, trainer, rng, state: Progress, best, config) -> None:
    tensors = {f"model/{k}": v for k, v in trainer.modules.state_dict().items()}
    tensors.update({f"best/{k}": v for k, v in (best or {}).items()})
    optim, groups = ckpt.optimizer_tensors(trainer.optimizer)
    rng_tensors, rng_meta = ckpt.rng_state(rng)
    meta = {
        "config_hash": config_hash(config),
        "progress": state.__dict__,
        "param_groups": groups,
        "rng": rng_meta,
    }
    ckpt.save_tensors(path, {**tensors, **optim, **rng_tensors}, meta)


def _restore(path: Path, trainer, rng, config) -> tuple[Progress, dict[str, torch.Tensor]]:
    tensors, meta = ckpt.load_tensors(path)
    if meta.get("config_hash") != config_hash(config):
        raise ckpt.CheckpointError(
            f"{path}: written with encoder config {meta.get('config_hash')}, the config now is "
            f"{config_hash(config)}; delete {path.parent} or train with resume=False"
        )
    trainer.modules.load_state_dict(_prefixed(tensors, "model/"))
    ckpt.restore_optimizer(trainer.optimizer, tensors, meta["param_groups"])
    ckpt.restore_rng(rng, tensors, meta["rng"])
    return Progress(**meta["progress"]), _prefixed(tensors, "best/")


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _log_start(tracker: Tracker, config: EncoderConfig, plan: Plan, device: str, data) -> None:
    tracker.log_params({f"encoder.{k}": v for k, v in config.model_dump().items()})
    tracker.log_params(
        {
            "encoder.config_hash": config_hash(config),
            "encoder.training_path": plan.path,
            "encoder.user_tower_resolved": plan.user_tower,
            "encoder.softmax_resolved": plan.softmax,
            "encoder.device_resolved": device,
            "encoder.backbone_hash": data.backbone_hash,
            "encoder.n_items": len(data.item_texts),
            "encoder.n_train_users": int(sum(len(s) > 0 for s in data.sequences)),
        }
    )


def _finish(trainer, data, plan, state: Progress, device: str, out_dir: Path, tracker):
    documents = data.documents
    extra: dict[str, Any] = {"user_doc": (documents.n_titles, documents.max_chars)}
    if plan.user_tower == "bert":
        extra["item_titles"] = list(documents.titles)
    encoder = trainer.encoder(data.backbone_name, data.backbone_hash, **extra)
    encoder.save(out_dir)
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    speed = state.examples / max(state.seconds, 1e-9)
    best = state.history[state.best_epoch] if state.history else {}
    tracker.log_metrics(
        {
            "encoder_best_epoch": float(state.best_epoch),
            "encoder_examples_per_second": speed,
            "encoder_train_seconds": state.seconds,
            **{f"encoder_best_{k}": v for k, v in best.items() if k.startswith("valid_")},
        }
    )
    tracker.set_tags({"encoder_hash": encoder.encoder_hash, "encoder_device": device})
    tracker.log_artifact(out_dir, "encoder")
    return TrainResult(
        encoder, state.history, state.best_epoch, speed, state.seconds, device, out_dir, plan
    )
