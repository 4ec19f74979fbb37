"""Training stage, data-parallel: the nightly's encoder training over several ranks (Ray Train's
TorchTrainer through recsys.compute.run_ranks, or torchrun via recsys.jobs.train_ddp).

Reads the prepared inputs (recsys.training.ddp_inputs); every rank runs recsys.training.ddp's
step on its equal shard of each global batch; rank 0 alone validates after each epoch (NDCG@10
on the validation users, early stopping as the local loop does), writes the checkpoint
(<out>/checkpoint/last.safetensors) and at the end the encoder directory (TwoTowerEncoder.save,
the same files as the local loop) plus a result JSON beside the inputs.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recsys.config import ComputeConfig, EncoderConfig, TextConfig, config_hash
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.tracking import NullTracker, Tracker
from recsys.training import checkpoint as ckpt
from recsys.training.ddp import build_model, rank_and_world, rank_device, train_step
from recsys.training.ddp_inputs import (
    INPUTS,
    PLAN,
    prepare_inputs,
    read_arrays,
    read_meta,
    validation_data,
)
from recsys.training.frozen import FrozenTrainer
from recsys.training.optim import adamw
from recsys.training.train import CHECKPOINT, Progress, TrainResult
from recsys.training.validation import VALID_K, ranking_metrics

RESULT = "result.json"  # beside the inputs: rank 0's history, best epoch, speed
TRAIN_KEYS = ("features", "history", "mask", "lengths", "targets", "users", "log_q")
PROFILE_KEYS = ("profiles", "has_profile")

log = logging.getLogger(__name__)


def global_batch(batch_size: int, world: int, pairs: int) -> int:
    """Pairs per optimizer step over all ranks: batch_size rounded down to a multiple of the
    world (at least one row per rank), at most every pair once."""
    if pairs < world:
        raise ValueError(f"{pairs} training pairs cannot be shared equally by {world} ranks")
    return max(world, min(batch_size, pairs) // world * world)


class Judge:
    """Rank 0's side of the loop: validation, early stopping, best weights, checkpoints and the
    saved encoder — through a FrozenTrainer holding the same towers, so the encoder directory
    is exactly what the local loop writes."""

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], out: Path):
        self.meta, self.out = meta, Path(out)
        self.config = EncoderConfig.model_validate(meta["encoder"])
        sequences, self.valid = validation_data(arrays)
        profiles = arrays.get("profiles")
        self.trainer = FrozenTrainer(
            self.config, arrays["features"], sequences, profiles, arrays["has_profile"], "cpu",
            "sampled", arrays["log_q"],
        )  # fmt: skip
        self.state, self.best = Progress(), None
        self.deadline = time.monotonic() + self.config.max_minutes * 60.0

    def end_epoch(self, towers, optimizer, loss: float, examples: int, seconds: float) -> bool:
        """Book one epoch (validation, best weights, checkpoint); True when training stops."""
        self.trainer.modules.load_state_dict(_cpu_state(towers))
        metrics = {"recall": float("nan"), "ndcg": 0.0}
        if len(self.valid.users):
            users = self.trainer.user_vectors(self.valid.users, self.valid.histories)
            metrics = ranking_metrics(users, self.trainer.item_vectors(), self.valid, VALID_K)
        record = {"epoch": float(self.state.epoch), "loss": loss, "examples": float(examples)}
        record.update({f"valid_{name}": value for name, value in metrics.items()})
        record["examples_per_second"] = examples / max(seconds, 1e-9)
        self.state.history.append(record)
        self.state.seconds += seconds
        self.state.examples += examples
        if self.state.improved(record["valid_ndcg"], has_valid=len(self.valid.users) > 0):
            self.best = _cpu_state(towers)
        self._checkpoint(towers, optimizer)
        more = (
            self.state.epoch < self.config.epochs and self.state.bad_epochs < self.config.patience
        )
        return not more or time.monotonic() > self.deadline

    def _checkpoint(self, towers, optimizer) -> None:
        tensors = {f"model/{k}": v for k, v in _cpu_state(towers).items()}
        tensors.update({f"best/{k}": v for k, v in (self.best or {}).items()})
        optim, groups = ckpt.optimizer_tensors(optimizer)
        meta = {
            "config_hash": config_hash(self.config),
            "progress": self.state.__dict__,
            "param_groups": groups,
        }
        ckpt.save_tensors(self.out / CHECKPOINT, {**tensors, **optim}, meta)

    def finish(self, result_path: Path, world: int, device: str) -> None:
        """Save the best epoch's towers as the encoder directory; the result JSON last."""
        self.trainer.modules.load_state_dict(self.best)
        encoder = self.trainer.encoder(
            self.meta["backbone_name"], self.meta["backbone_hash"],
            user_doc=tuple(self.meta["user_doc"]),
        )  # fmt: skip
        encoder.save(self.out)
        shutil.rmtree(self.out / "checkpoint", ignore_errors=True)
        s = self.state
        result = {"history": s.history, "best_epoch": s.best_epoch, "seconds": s.seconds}
        result.update({"examples": s.examples, "world": world, "device": device})
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")


def _cpu_state(towers: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in towers.state_dict().items()}


def _restore(path: Path, towers, optimizer, config: EncoderConfig, judge: Judge | None) -> int:
    """Every rank: weights and optimizer from rank 0's checkpoint; rank 0 also its progress and
    best weights. Returns the epochs already done."""
    tensors, meta = ckpt.load_tensors(path)
    if meta.get("config_hash") != config_hash(config):
        raise ckpt.CheckpointError(
            f"{path}: written with encoder config {meta.get('config_hash')}, the config now is "
            f"{config_hash(config)}; delete {path.parent} or train without resume"
        )
    towers.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    ckpt.restore_optimizer(optimizer, tensors, meta["param_groups"])
    if judge is not None:
        judge.state = Progress(**meta["progress"])
        judge.best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    return int(meta["progress"]["epoch"])


def _stop_everywhere(stop: bool, device: str) -> bool:
    """Rank 0's decision on every rank: the ranks must run the same number of epochs."""
    if not dist.is_initialized():
        return stop
    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def train_encoder_ranks(config: dict[str, Any]) -> None:
    """The loop every rank runs. config: inputs (prepared directory), out (encoder directory),
    result (JSON path rank 0 writes), threads (torch threads per rank), resume (continue from
    <out>/checkpoint when there)."""
    rank, world = rank_and_world()
    device = rank_device()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    meta, host = read_meta(config["inputs"]), read_arrays(config["inputs"])
    encoder = EncoderConfig.model_validate(meta["encoder"])
    keys = TRAIN_KEYS + (PROFILE_KEYS if "profiles" in host else ())
    arrays = {k: torch.from_numpy(host[k]).to(device) for k in keys}
    hidden = int(host["features"].shape[1])
    towers, model = build_model(encoder, hidden, encoder.seed, device, "profiles" in host)
    optimizer = adamw(model.parameters(), encoder.lr, device)
    judge = Judge(meta, host, Path(config["out"])) if rank == 0 else None
    epoch, checkpoint = 0, Path(config["out"]) / CHECKPOINT
    if config.get("resume") and checkpoint.is_file():
        epoch = _restore(checkpoint, towers, optimizer, encoder, judge)
    n = len(host["targets"])
    size = global_batch(encoder.batch_size, world, n)
    settings = {"temperature": encoder.temperature, "gather": True, "exclude_seen": True}
    settings["clip"] = 1.0  # as the local trainers clip
    while epoch < encoder.epochs:
        model.train()
        order = np.random.default_rng([encoder.seed, epoch]).permutation(n)  # same on every rank
        start, total, steps = time.monotonic(), 0.0, n // size
        for step in range(steps):
            first = step * size + rank * (size // world)
            rows = torch.from_numpy(order[first : first + size // world]).to(device)
            total += train_step(model, optimizer, arrays, rows, settings)
        seconds, epoch = time.monotonic() - start, epoch + 1
        stop = (
            judge.end_epoch(towers, optimizer, total / steps, steps * size, seconds)
            if judge
            else False
        )
        if _stop_everywhere(stop, device):
            break
    if judge is not None:
        judge.finish(Path(config["result"]), world, device)


def train_encoder_on_ranks(
    dataset: Dataset,
    split: Split,
    config: EncoderConfig,
    text_config: TextConfig,
    out_dir: Path,
    compute: ComputeConfig,
    scratch: Path,
    *,
    tracker: Tracker | None = None,
    cache_dir: Path,
    progress: bool = False,
) -> TrainResult:
    """The driver's side: prepare the inputs under `scratch`, train on compute.train_workers
    Ray Train ranks, read rank 0's result; the encoder directory out_dir is what
    train_encoder would have written. Ray Train keeps its run state under scratch/ray-train."""
    from recsys.compute import run_ranks, worker_threads
    from recsys.encoder.model import TwoTowerEncoder

    tracker = NullTracker() if tracker is None else tracker
    if config.id_vectors_min_count:
        log.warning(
            "encoder.id_vectors_min_count = %d: id vectors train in single-process training "
            "only; data-parallel training trains text-only towers",
            config.id_vectors_min_count,
        )
    scratch = Path(scratch)
    meta = prepare_inputs(dataset, split, config, text_config, cache_dir, scratch, progress)
    loop = {
        "inputs": str(scratch),
        "out": str(Path(out_dir).resolve()),
        "result": str(scratch.resolve() / RESULT),
        "threads": worker_threads(compute),
    }
    tracker.log_params({f"encoder.{k}": v for k, v in config.model_dump().items()})
    tracker.log_params(
        {
            "encoder.config_hash": config_hash(config),
            "encoder.training_path": PLAN.path,
            "encoder.train_workers": compute.train_workers,
            "encoder.backbone_hash": meta["backbone_hash"],
            "encoder.n_pairs": meta["pairs"],
        }
    )
    run_ranks(train_encoder_ranks, loop, compute, str((scratch / "ray-train").resolve()))
    result = json.loads((scratch / RESULT).read_text(encoding="utf-8"))
    (scratch / INPUTS).unlink(missing_ok=True)  # features and pairs: large, and used up
    return _booked(result, TwoTowerEncoder.load(out_dir), Path(out_dir), tracker)


def _booked(result: dict[str, Any], encoder, out_dir: Path, tracker: Tracker) -> TrainResult:
    """The ranks' result as a TrainResult, its metrics sent to the tracker as the local loop's."""
    history = result["history"]
    for step, record in enumerate(history):
        metrics = {f"encoder_{k}": v for k, v in record.items() if k != "epoch"}
        tracker.log_metrics(metrics, step=step)
    speed = result["examples"] / max(result["seconds"], 1e-9)
    best = history[result["best_epoch"]] if history else {}
    tracker.log_metrics(
        {
            "encoder_best_epoch": float(result["best_epoch"]),
            "encoder_examples_per_second": speed,
            "encoder_train_seconds": result["seconds"],
            **{f"encoder_best_{k}": v for k, v in best.items() if k.startswith("valid_")},
        }
    )
    tracker.set_tags({"encoder_hash": encoder.encoder_hash, "encoder_device": result["device"]})
    tracker.log_artifact(out_dir, "encoder")
    return TrainResult(
        encoder, history, result["best_epoch"], speed, result["seconds"], result["device"],
        out_dir, PLAN,
    )  # fmt: skip
