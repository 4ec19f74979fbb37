"""Checkpoints: atomic writes, tensors + meta round trip, optimizer and RNG state, bad files."""

import os
import random

import numpy as np
import pytest
import torch

from recsys.training import checkpoint as ckpt


def test_tensors_and_meta_round_trip(tmp_path):
    path = tmp_path / "c" / "last.safetensors"
    digest = ckpt.save_tensors(path, {"a": torch.arange(6.0).view(2, 3)}, {"epoch": 3, "x": [1]})
    tensors, meta = ckpt.load_tensors(path)
    assert torch.equal(tensors["a"], torch.arange(6.0).view(2, 3))
    assert meta == {"epoch": 3, "x": [1]}
    assert len(digest) == 64
    assert [p.name for p in path.parent.iterdir()] == ["last.safetensors"]  # no temp left


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    ckpt.save_tensors(path, {"a": torch.ones(2)}, {"epoch": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_tensors(path, {"a": torch.zeros(2)}, {"epoch": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # temp removed
    tensors, meta = ckpt.load_tensors(path)
    assert meta["epoch"] == 1 and torch.equal(tensors["a"], torch.ones(2))


def test_unreadable_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "last.safetensors"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="last.safetensors"):
        ckpt.load_tensors(path)


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1)

    def train(model, optimizer, steps):
        for step in range(steps):
            x = torch.full((3, 4), float(step + 1))
            loss = model(x).pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    model, optimizer = make()
    train(model, optimizer, 2)
    tensors, groups = ckpt.optimizer_tensors(optimizer)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt.save_tensors(tmp_path / "o.safetensors", tensors, {"groups": groups})
    train(model, optimizer, 2)  # the uninterrupted run

    loaded, meta = ckpt.load_tensors(tmp_path / "o.safetensors")
    model2, optimizer2 = make()
    model2.load_state_dict(weights)
    ckpt.restore_optimizer(optimizer2, loaded, meta["groups"])
    train(model2, optimizer2, 2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, model2.state_dict()[key])


def test_rng_state_round_trip(tmp_path):
    generator = np.random.default_rng(5)
    random.seed(1)
    torch.manual_seed(2)
    tensors, meta = ckpt.rng_state(generator)
    ckpt.save_tensors(tmp_path / "r.safetensors", tensors, meta)
    expected = (generator.random(), random.random(), torch.rand(1).item())
    loaded, loaded_meta = ckpt.load_tensors(tmp_path / "r.safetensors")
    other = np.random.default_rng(99)
    ckpt.restore_rng(other, loaded, loaded_meta)
    assert (other.random(), random.random(), torch.rand(1).item()) == expected
