"""Benchmark sections of benchmarks/gpu_check.py for issue 20 (scale-out on one GPU): item embedding
through one Ray Data actor holding the GPU vs the same encoder in-process; data-parallel training
steps/s of the towers under DDP with one rank vs the bare module; the IVF-PQ tier's build on
faiss-gpu vs the CPU. Each figure is printed beside its peer from the same run.

Reads nothing; writes an encoder and index files into the caller's temp folder only. Under
--cpu-smoke every section runs at toy sizes on the CPU (Ray on CPU, gloo), which checks the code,
not the figures.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import torch

MODEL = "packaged:all-MiniLM-L6-v2"
RAY_BLOCK = 8192  # texts per Ray Data block: 1M texts -> 123 blocks through the one actor


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ray_embedding(device: str, texts: list[str], folder: Path) -> None:
    """Pooled backbone features of `texts` (bf16 autocast on CUDA) through one Ray Data actor
    reserving the GPU, vs the same saved encoder in this process; both load it from its
    directory inside the clock, neither uses a feature cache."""
    import ray

    from recsys.config import ComputeConfig, EncoderConfig
    from recsys.encoder.backbone import model_hash
    from recsys.encoder.distributed import remote_item_features
    from recsys.encoder.model import TwoTowerEncoder, build_towers

    torch.manual_seed(0)
    config = EncoderConfig(model_name_or_path=MODEL, max_length=64)
    adapter, user = build_towers(config, 384, "sequence")
    encoder = TwoTowerEncoder(config, adapter, user, MODEL, model_hash(MODEL), "frozen")
    directory = folder / "encoder"
    encoder.save(directory)
    gpus = 1 if device.startswith("cuda") else 0
    cpus = max(1, min(8, (os.cpu_count() or 2) - 1))  # the actor's tokenizer threads
    ray.init(num_cpus=cpus + 1, num_gpus=gpus, logging_level="WARNING", log_to_driver=False)
    try:
        compute = ComputeConfig(
            backend="ray", workers=1, cpus_per_worker=cpus, gpus_per_worker=gpus,
            batch_size=RAY_BLOCK,
        )  # fmt: skip
        start = time.perf_counter()
        loaded = TwoTowerEncoder.load(directory, device)
        remote = remote_item_features(loaded, directory, None, compute)(texts)  # (n, 384)
        ray_s = time.perf_counter() - start
    finally:
        ray.shutdown()
    torch.set_num_threads(cpus)
    start = time.perf_counter()
    local = TwoTowerEncoder.load(directory, device).item_featurizer(None).embed(texts)
    _sync(device)
    local_s = time.perf_counter() - start
    diff = float(np.abs(remote - local).max())
    n = len(texts)
    print(
        f"embed {n:,} texts, MiniLM pooled features ({'bf16 autocast' if gpus else 'fp32 CPU'}, "
        f"max_length 64): 1 Ray Data actor ({cpus} CPUs, {gpus} GPU) {n / ray_s:,.0f} items/s "
        f"({ray_s:.1f} s, actor start included) vs in-process {n / local_s:,.0f} items/s "
        f"({local_s:.1f} s): Ray / in-process {local_s / ray_s:.2f}x; max abs diff {diff:.1e}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _steps_per_second(model, batch, temperature: float, steps: int, device: str) -> float:
    """Timed optimizer steps of `model` on one fixed batch (after 3 warm-up steps)."""
    from recsys.training.ddp import global_sampled_softmax

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    features, history, mask, lengths, targets = batch

    def step() -> None:
        users, positives = model(features, history, mask, lengths, targets)
        loss, _ = global_sampled_softmax(users, positives, targets, temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: cuBLAS handles, NCCL communicator, allocator
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def ddp_steps(device: str, steps: int, batch: int, n_items: int) -> None:
    """Steps/s of recsys.training.ddp's PairTowers + global_sampled_softmax (the model and loss
    of the Ray Train / torchrun loop) under DistributedDataParallel with one rank (NCCL on CUDA,
    gloo on CPU), vs the same module unwrapped; fp32 as that loop trains; same data and seed."""
    import torch.distributed as dist
    from torch import nn

    from recsys.config import EncoderConfig
    from recsys.training.ddp import PairTowers

    config = EncoderConfig(max_length=64)
    gen = torch.Generator().manual_seed(0)
    length = 20
    data = (
        torch.randn(n_items, 384, generator=gen).to(device),  # (m, hidden) pooled features
        torch.randint(0, n_items, (batch, length), generator=gen).to(device),  # (b, n) history
        torch.ones(batch, length, dtype=torch.bool, device=device),  # (b, n) mask
        torch.full((batch,), length, dtype=torch.long, device=device),  # (b,) lengths
        torch.randint(0, n_items, (batch,), generator=gen).to(device),  # (b,) targets
    )
    backend = "nccl" if device.startswith("cuda") else "gloo"
    address = f"tcp://127.0.0.1:{_free_port()}"
    dist.init_process_group(backend, init_method=address, rank=0, world_size=1)
    rates = {}
    try:
        for wrapped in (True, False):
            torch.manual_seed(0)
            model: nn.Module = PairTowers(config, 384).to(device)
            if wrapped:
                ids = [0] if device.startswith("cuda") else None
                model = nn.parallel.DistributedDataParallel(
                    model, device_ids=ids, find_unused_parameters=True
                )
            rates[wrapped] = _steps_per_second(model, data, config.temperature, steps, device)
    finally:
        dist.destroy_process_group()
    print(
        f"DDP train steps (PairTowers, global batch {batch}, {n_items:,} items, history {length}, "
        f"fp32, {backend}): 1 rank {rates[True]:.1f} steps/s vs unwrapped module "
        f"{rates[False]:.1f} steps/s: DDP / bare {rates[True] / rates[False]:.2f}x"
    )


def ivfpq_build(n_items: int, peer_items: int, dim: int, smoke: bool = False) -> None:
    """The IVF-PQ tier (VectorIndex.build, factory ivfpq) at n_items with k-means on faiss-gpu,
    then GPU vs CPU on the first peer_items of the same vectors; recall@10 after re-rank vs exact
    search on 200 fresh queries."""
    import faiss
    from scaleout import clustered_sphere, exact_top_k, mixture, recall

    from recsys.config import IndexConfig
    from recsys.index import VectorIndex

    gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if not gpu:
        why = "no GPU support (faiss-cpu, as requirements.lock installs)"
        if hasattr(faiss, "StandardGpuResources"):
            why = "0 GPUs visible"
        print(f"IVF-PQ build on faiss-gpu: did not run: faiss {faiss.__version__} has {why}")
        if not smoke:
            return
    mix = mixture(dim, 1000, 0)
    items = clustered_sphere(n_items, 1.0, mix, 1)  # (n_items, dim) unit rows
    queries = clustered_sphere(200, 1.0, mix, 2)
    runs = [(n_items, "auto")] if gpu else []
    runs += [(peer_items, "auto")] if gpu else []
    runs += [(peer_items, "never")]
    for n, use_gpu in runs:
        start = time.perf_counter()
        index = VectorIndex.build(items[:n], IndexConfig(factory="ivfpq", use_gpu=use_gpu))
        seconds = time.perf_counter() - start
        found = index.search(queries, 10)[0]
        truth = exact_top_k(items[:n], queries, 10)
        where = "GPU k-means" if use_gpu == "auto" else "CPU only"
        print(
            f"IVF-PQ + re-rank ({index.factory}) over {n:,} x {dim}, {where}: build "
            f"{seconds:.1f} s (incl. the recall check), recall@10 {recall(found, truth):.4f}"
        )
        del index
