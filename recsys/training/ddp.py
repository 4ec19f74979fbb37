"""Training stage, data-parallel: the towers' in-batch sampled softmax over several ranks (DDP, run
by Ray Train's TorchTrainer through recsys.compute.run_ranks, or by torchrun). Reads pooled item
features and (history, next item) pairs from an .npz file; train_pairs writes each rank's losses
and final parameters as JSON into an output directory (recsys.training.ddp_encoder runs the same
step for the nightly's encoder).

Equal shards per rank; one DDP forward per step (calling the towers' submodules directly would
bypass DDP's gradient sync); every rank's users and positives gathered, so each rank evaluates the
global batch's loss (in-batch negatives from all ranks, labels = global row numbers) with
gradients through its own rows, scaled by the world size to undo DDP's gradient averaging: the
update equals one process training on the whole global batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from recsys.config import EncoderConfig
from recsys.encoder.towers import build_towers, last_states
from recsys.training.losses import sampled_softmax_loss

PAIR_COLUMNS = ("history", "mask", "lengths", "targets")  # (P, n), (P, n), (P,), (P,)


class PairTowers(nn.Module):
    """Item adapter + sequence user tower as one module, so DDP sees a single forward."""

    def __init__(self, config: EncoderConfig, hidden: int):
        super().__init__()
        self.adapter, self.user = build_towers(config, hidden, "sequence")

    def forward(self, features, history, mask, lengths, targets, profile=None, profile_mask=None):
        """features (m, hidden); history (b, n) rows of features, mask (b, n), lengths (b,),
        targets (b,); profile (b, hidden) and profile_mask (b,) or None -> users (b, dim),
        positives (b, dim)."""
        vectors = self.adapter(features)  # (m, dim)
        states = self.user(vectors[history], mask, profile, profile_mask)  # (b, n + 1, dim)
        return last_states(states, lengths), vectors[targets]


def rank_and_world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device() -> str:
    """cuda:<LOCAL_RANK> under NCCL (torchrun and Ray Train set LOCAL_RANK), else cpu."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
        return device
    return "cpu"


def _gather(local: torch.Tensor) -> torch.Tensor:
    """(world * b, ...) every rank's rows in rank order; this rank's keep their gradient."""
    parts = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.detach().contiguous())
    parts[dist.get_rank()] = local
    return torch.cat(parts)


def global_sampled_softmax(
    users: torch.Tensor,
    positives: torch.Tensor,
    positive_idx: torch.Tensor,
    temperature: float,
    gather: bool = True,
    log_q: torch.Tensor | None = None,
    seen: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """(loss to backpropagate, the global batch's mean loss). users / positives (b, dim),
    positive_idx (b,), log_q (b,) and seen (b, n) (-1 = none) are this rank's rows.
    gather=False (or one rank): this rank's rows alone, in-batch negatives from its own shard
    only (the negative control of the tests)."""
    if not gather or not dist.is_initialized() or dist.get_world_size() == 1:
        loss = sampled_softmax_loss(users, positives, positive_idx, temperature, log_q, seen=seen)
        return loss, _mean_across_ranks(loss.detach())
    sizes = [torch.zeros(1, dtype=torch.long, device=users.device) for _ in range(_world())]
    dist.all_gather(sizes, torch.tensor([users.shape[0]], device=users.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"ranks must hold equal shards, found {[int(s) for s in sizes]} rows")
    extras = [None if t is None else _gather(t) for t in (log_q, seen)]  # no gradient: inputs
    full = sampled_softmax_loss(
        _gather(users),
        _gather(positives),
        _gather(positive_idx),
        temperature,
        extras[0],
        seen=extras[1],
    )
    return full * _world(), float(full.detach())


def _world() -> int:
    return dist.get_world_size()


def _mean_across_ranks(value: torch.Tensor) -> float:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def build_model(
    encoder: EncoderConfig, hidden: int, seed: int, device: str, profiles: bool = False
) -> tuple[PairTowers, nn.Module]:
    """(the towers, what to call forward on: DDP over them when a process group is up). The
    seed gives every rank the same initial weights. profiles: the pairs carry profile features
    (else the profile projection gets no gradient, which DDP must be told)."""
    torch.manual_seed(int(seed))
    towers = PairTowers(encoder, hidden).to(device)
    if not dist.is_initialized():
        return towers, towers
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return towers, nn.parallel.DistributedDataParallel(
        towers, device_ids=ids, find_unused_parameters=not profiles
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    arrays: dict[str, torch.Tensor],
    rows: torch.Tensor | slice,
    settings: dict[str, Any],
) -> float:
    """One optimizer step on this rank's `rows` of the pairs; the global batch's mean loss.
    arrays: features (m, hidden), the PAIR_COLUMNS, optionally users (P,) with profiles
    (n_users, hidden) + has_profile (n_users,), and log_q (m,). settings: temperature, gather,
    exclude_seen (mask items the history holds, as the local trainer does), clip (or None)."""
    history, mask, lengths, targets = (arrays[k][rows] for k in PAIR_COLUMNS)
    profile = profile_mask = None
    if "profiles" in arrays:
        users = arrays["users"][rows]
        profile, profile_mask = arrays["profiles"][users], arrays["has_profile"][users]
    vectors, positives = model(
        arrays["features"], history, mask, lengths, targets, profile, profile_mask
    )
    log_q = arrays["log_q"][targets] if "log_q" in arrays else None
    seen = torch.where(mask, history, -1) if settings.get("exclude_seen") else None
    loss, mean = global_sampled_softmax(
        vectors,
        positives,
        targets,
        float(settings["temperature"]),
        bool(settings["gather"]),
        log_q,
        seen,
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.get("clip"):
        nn.utils.clip_grad_norm_(model.parameters(), float(settings["clip"]))
    optimizer.step()
    return mean


def load_arrays(path: str | Path, device: str) -> dict[str, torch.Tensor]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: torch.from_numpy(npz[k]).to(device) for k in npz.files}


def train_pairs(config: dict[str, Any]) -> None:
    """The loop every rank runs (Ray Train's train_loop_per_worker): config has data (.npz with
    features, history, mask, lengths, targets), out (directory), encoder (EncoderConfig fields),
    global_batch, steps, lr, seed, gather. Rank r trains on rows [r*B, (r+1)*B) of each global
    batch (B = global_batch / world); each rank writes rank<r>.json."""
    rank, world = rank_and_world()
    device = rank_device()
    arrays = load_arrays(config["data"], device)
    encoder = EncoderConfig.model_validate(config["encoder"])
    towers, model = build_model(encoder, int(arrays["features"].shape[1]), config["seed"], device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    shard = int(config["global_batch"]) // world
    settings = {"temperature": encoder.temperature, "gather": config["gather"]}
    losses = []
    for step in range(int(config["steps"])):
        start = step * int(config["global_batch"]) + rank * shard
        losses.append(train_step(model, optimizer, arrays, slice(start, start + shard), settings))
    params = torch.cat([p.detach().reshape(-1) for p in towers.parameters()]).tolist()
    out = Path(config["out"]) / f"rank{rank}.json"
    out.write_text(json.dumps({"losses": losses, "params": params, "world": world}))
