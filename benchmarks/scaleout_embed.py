"""Benchmark section `embed` of benchmarks/scaleout.py (issue 20): item embedding items/s through
Ray Data (an actor pool of `--ray-workers` actors, one thread each) against in-process (one
process, `--threads` threads), same encoder, same texts, same run.

Encoder: the frozen path over the packaged all-MiniLM-L6-v2 (ONNX Runtime on the CPU, max_length
64, as the nightly's default), towers seeded at random (throughput does not depend on training).
Texts: generated item documents of 20-60 words. Each side starts from an empty feature cache, so
every text is computed; both include loading the backbone (Ray: starting the actors, each loading
the encoder from its directory), which the nightly pays too. Not timed: the ONNX export (made
once per weights and cached) and starting the local Ray cluster (a nightly joins a running one).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recsys.config import ComputeConfig, EncoderConfig
from recsys.encoder.backbone import model_hash
from recsys.encoder.distributed import remote_item_features
from recsys.encoder.model import TwoTowerEncoder, build_towers
from recsys.encoder.onnx import ensure_export

MODEL = "packaged:all-MiniLM-L6-v2"
BATCH = 256  # texts per Ray Data block: 4,000 texts -> 16 blocks over the actors
WORDS = (
    "a the young old detective city night war love story family secret island ship ghost robot "
    "music jazz river moon king queen prince journey dark comedy drama space future past small "
    "town road summer winter heist revenge friendship school dream fire storm mountain sea"
).split()


def documents(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS, int(rng.integers(20, 61)))).capitalize() + f". Item {i}."
        for i in range(n)
    ]


def saved_encoder(folder: Path) -> Path:
    torch.manual_seed(0)
    config = EncoderConfig(model_name_or_path=MODEL, runtime="onnxruntime")
    adapter, user = build_towers(config, 384, "sequence")
    encoder = TwoTowerEncoder(config, adapter, user, MODEL, model_hash(MODEL), "frozen")
    encoder.save(folder / "encoder")
    return folder / "encoder"


def embed_section(n_texts: int, threads: int, workers: int, seed: int) -> None:
    import ray

    print(f"\n## Embedding: Ray Data ({workers} actors) vs in-process, {n_texts:,} texts")
    ray.init(num_cpus=workers, logging_level="WARNING", log_to_driver=False)
    texts = documents(n_texts, seed)
    with tempfile.TemporaryDirectory(prefix="scaleout-embed-") as tmp:
        folder = Path(tmp)
        directory = saved_encoder(folder)
        backbone = TwoTowerEncoder.load(directory).backbone()[1]
        for cache in ("local", "ray"):  # the ONNX export: once per weights, not timed
            ensure_export(backbone, folder / cache)
        torch.set_num_threads(threads)
        start = time.perf_counter()
        local = TwoTowerEncoder.load(directory).encode_items(texts, folder / "local")
        local_s = time.perf_counter() - start

        compute = ComputeConfig(backend="ray", workers=workers, batch_size=BATCH)
        start = time.perf_counter()
        encoder = TwoTowerEncoder.load(directory)
        fan_out = remote_item_features(encoder, directory, folder / "ray", compute)
        remote = encoder.encode_items(texts, folder / "ray", fan_out)
        ray_s = time.perf_counter() - start
    ray.shutdown()
    diff = float(np.abs(remote - local).max())
    print("| path | seconds | items/s | ratio to in-process |")
    print("|---|---|---|---|")
    print(f"| in-process ({threads} threads) | {local_s:.1f} | {n_texts / local_s:.0f} | 1.00 |")
    print(
        f"| Ray Data, {workers} actors x 1 thread | {ray_s:.1f} | {n_texts / ray_s:.0f} | "
        f"{local_s / ray_s:.2f} |"
    )
    print(f"max abs difference of the item vectors, Ray vs in-process: {diff:.2e}")
