"""Encoder stage on a Ray cluster: the backbone's pooled features of texts computed by an actor
pool (recsys.compute), each actor loading the encoder from its directory. Reads an encoder
directory (and the ONNX export the driver wrote into the feature cache); returns (n, hidden)
features in text order to the driver, which alone writes the caches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recsys.compute import ROW, cap_threads, map_batches, worker_threads
from recsys.config import ComputeConfig
from recsys.encoder.onnx import ensure_export, resolve_runtime

TEXT, FEATURES = "text", "features"


class PooledFeatureWorker:
    """One actor: the encoder loaded from `encoder_dir` (tokenizer included, never shipped from
    the driver), its thread pool capped to `threads`; batches {ROW, TEXT} -> {ROW, FEATURES}."""

    def __init__(self, encoder_dir: str, feature_cache: str | None, threads: int, device: str):
        from recsys.encoder.model import TwoTowerEncoder

        cap_threads(threads)
        encoder = TwoTowerEncoder.load(Path(encoder_dir), device)
        cache = Path(feature_cache) if feature_cache else None
        self.featurizer = encoder.item_featurizer(cache)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[TEXT]]
        # embed(), not __call__: the driver already looked the texts up in the feature cache.
        return {ROW: batch[ROW], FEATURES: self.featurizer.embed(texts)}  # (b,), (b, hidden)


def remote_item_features(
    encoder: Any, encoder_dir: Path, feature_cache: Path | None, config: ComputeConfig
) -> Callable[[list[str]], np.ndarray]:
    """texts -> (n, hidden) pooled item features computed on the actor pool: the embed_fn of
    TwoTowerEncoder.encode_items. The ONNX export the actors read is made here, once."""
    featurizer = encoder.item_featurizer(feature_cache)
    device = "cuda" if config.gpus_per_worker > 0 else "cpu"
    onnx = featurizer.cache_dir is not None and resolve_runtime(featurizer.runtime, device) == (
        "onnxruntime"
    )
    kwargs = {
        "encoder_dir": str(Path(encoder_dir).resolve()),
        "feature_cache": str(featurizer.cache_dir) if featurizer.cache_dir else None,
        "threads": worker_threads(config),
        "device": device,
    }

    def embed(texts: list[str]) -> np.ndarray:
        if onnx:  # only when some text is not cached: loading the backbone here costs memory
            ensure_export(encoder.backbone()[1], featurizer.cache_dir)
        out = map_batches({TEXT: list(texts)}, PooledFeatureWorker, kwargs, config)
        return out[FEATURES].astype(np.float32, copy=False)

    return embed
