"""Data-parallel tower training (recsys.training.ddp) under Ray Train's TorchTrainer with 2 gloo
ranks on the session's local Ray cluster: 2 ranks x batch B train exactly like 1 process x 2B
(30 steps, dropout 0, same seed), both ranks hold identical weights, and without the cross-rank
gather of in-batch negatives the losses differ (the negative control)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.compute import run_ranks
from recsys.config import ComputeConfig
from recsys.encoder.towers import pad_histories
from recsys.training.ddp import train_pairs

pytestmark = pytest.mark.slow
STEPS, B, N_ITEMS, HIDDEN = 30, 16, 150, 32


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Random pooled features (N_ITEMS, HIDDEN) and STEPS global batches of 2B (history, next
    item) pairs, seeded."""
    rng = np.random.default_rng(0)
    rows = STEPS * 2 * B
    histories = [rng.integers(0, N_ITEMS, int(rng.integers(1, 9))) for _ in range(rows)]
    history, mask, lengths = (t.numpy() for t in pad_histories(histories, 8))
    path = tmp_path_factory.mktemp("ddp") / "pairs.npz"
    np.savez(
        path,
        features=rng.standard_normal((N_ITEMS, HIDDEN)).astype(np.float32),
        history=history,
        mask=mask,
        lengths=lengths,
        targets=rng.integers(0, N_ITEMS, rows),
    )
    return path


def _config(data, out, gather: bool) -> dict:
    out.mkdir()
    encoder = {"dim": 16, "seq_heads": 2, "seq_layers": 1, "history_len": 8, "dropout": 0.0}
    run = {"steps": STEPS, "lr": 3e-3, "seed": 0, "gather": gather, "global_batch": 2 * B}
    return {"data": str(data), "out": str(out), "encoder": encoder, **run}


def _ranks(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


def test_two_ranks_train_like_one_process_with_twice_the_batch(ray_cluster, pairs, tmp_path):
    torch.set_num_threads(1)
    train_pairs(_config(pairs, tmp_path / "one", gather=True))  # 1 process x 2B, no DDP
    (single,) = _ranks(tmp_path / "one")
    compute = ComputeConfig(train_workers=2)
    storage = str(tmp_path / "ray-train")
    run_ranks(train_pairs, _config(pairs, tmp_path / "ddp", gather=True), compute, storage)
    ranks = _ranks(tmp_path / "ddp")
    assert [r["world"] for r in ranks] == [2, 2] and single["world"] == 1

    reference = np.array(single["losses"])  # (STEPS,)
    assert reference[-1] < reference[0]  # it trains
    for rank in ranks:
        relative = np.abs(np.array(rank["losses"]) - reference) / np.abs(reference)
        assert relative.max() <= 1e-5, relative.max()
    assert np.array_equal(ranks[0]["params"], ranks[1]["params"])  # DDP kept them in step

    run_ranks(train_pairs, _config(pairs, tmp_path / "local", gather=False), compute, storage)
    control = _ranks(tmp_path / "local")[0]
    relative = np.abs(np.array(control["losses"]) - reference) / np.abs(reference)
    assert relative.max() > 1e-3  # negatives from one's own shard only: not the same training
