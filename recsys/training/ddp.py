"""Training stage, data-parallel: the towers' in-batch sampled softmax over several ranks (DDP, run
by Ray Train's TorchTrainer through recsys.compute.run_ranks, or by torchrun). Reads pooled item
features and (history, next item) pairs from an .npz file; writes each rank's losses and final
parameters as JSON into an output directory.

Equal shards per rank; one DDP forward per step (calling the towers' submodules directly would
bypass DDP's gradient sync); every rank's users and positives gathered, so each rank evaluates the
global batch's loss (in-batch negatives from all ranks, labels = global row numbers) with
gradients through its own rows, scaled by the world size to undo DDP's gradient averaging: the
update equals one process training on the whole global batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from recsys.config import EncoderConfig
from recsys.encoder.towers import build_towers, last_states
from recsys.training.losses import sampled_softmax_loss


class PairTowers(nn.Module):
    """Item adapter + sequence user tower as one module, so DDP sees a single forward."""

    def __init__(self, config: EncoderConfig, hidden: int):
        super().__init__()
        self.adapter, self.user = build_towers(config, hidden, "sequence")

    def forward(self, features, history, mask, lengths, targets):
        """features (m, hidden); history (b, n) rows of features, mask (b, n), lengths (b,),
        targets (b,) -> users (b, dim), positives (b, dim)."""
        vectors = self.adapter(features)  # (m, dim)
        states = self.user(vectors[history], mask)  # (b, n + 1, dim)
        return last_states(states, lengths), vectors[targets]


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
) -> tuple[torch.Tensor, float]:
    """(loss to backpropagate, the global batch's mean loss). users / positives (b, dim) and
    positive_idx (b,) are this rank's rows. gather=False (or one rank): this rank's rows alone,
    in-batch negatives from its own shard only (the negative control of the tests)."""
    if not gather or not dist.is_initialized() or dist.get_world_size() == 1:
        loss = sampled_softmax_loss(users, positives, positive_idx, temperature)
        return loss, _mean_across_ranks(loss.detach())
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([users.shape[0]]))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"ranks must hold equal shards, found {[int(s) for s in sizes]} rows")
    idx = [torch.zeros_like(positive_idx) for _ in sizes]
    dist.all_gather(idx, positive_idx.contiguous())
    full = sampled_softmax_loss(_gather(users), _gather(positives), torch.cat(idx), temperature)
    return full * dist.get_world_size(), float(full.detach())


def _mean_across_ranks(value: torch.Tensor) -> float:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def train_pairs(config: dict[str, Any]) -> None:
    """The loop every rank runs (Ray Train's train_loop_per_worker): config has data (.npz with
    features, history, mask, lengths, targets), out (directory), encoder (EncoderConfig fields),
    global_batch, steps, lr, seed, gather. Rank r trains on rows [r*B, (r+1)*B) of each global
    batch (B = global_batch / world); each rank writes rank<r>.json."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.manual_seed(int(config["seed"]))  # the same initial weights on every rank
    with np.load(config["data"], allow_pickle=False) as npz:
        arrays = {k: torch.from_numpy(npz[k]) for k in npz.files}
    encoder = EncoderConfig.model_validate(config["encoder"])
    towers = PairTowers(encoder, int(arrays["features"].shape[1]))
    model: nn.Module = towers
    if dist.is_initialized():  # the profile slot's weights get no gradient without profiles
        model = nn.parallel.DistributedDataParallel(towers, find_unused_parameters=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    shard = int(config["global_batch"]) // world
    losses = []
    for step in range(int(config["steps"])):
        start = step * int(config["global_batch"]) + rank * shard
        rows = slice(start, start + shard)
        inputs = [arrays[k][rows] for k in ("history", "mask", "lengths", "targets")]
        users, positives = model(arrays["features"], *inputs)
        loss, mean = global_sampled_softmax(
            users, positives, inputs[-1], encoder.temperature, bool(config["gather"])
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(mean)
    params = torch.cat([p.detach().reshape(-1) for p in towers.parameters()]).tolist()
    out = Path(config["out"]) / f"rank{rank}.json"
    out.write_text(json.dumps({"losses": losses, "params": params, "world": world}))
