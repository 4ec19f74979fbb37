"""Encoder stage: cached frozen BERT features of texts (CPU path), keyed by model hash + text hash.

Reads texts and a backbone; writes <cache_dir>/<model hash>-L<max_length>-<set hash>.npz (pooled
vectors). Reruns are free; a changed catalog re-embeds only the texts no earlier cache file holds.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.atomic import atomic_write_bytes
from recsys.encoder import backbone as bb
from recsys.encoder.onnx import for_runtime

Backbone = tuple[Any, torch.nn.Module]


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """sha256 hex (first 16 chars) of each text, as a fixed-width unicode array (no pickle)."""
    return np.array([hashlib.sha256(t.encode("utf-8")).hexdigest()[:16] for t in texts], "U16")


def _set_hash(hashes: np.ndarray) -> str:
    return hashlib.sha256("".join(hashes.tolist()).encode()).hexdigest()[:16]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def pooled_features(
    texts: Sequence[str],
    model_name: str,
    max_length: int,
    batch_size: int,
    device: str,
    cache_dir: Path | None,
    load: Callable[[], Backbone] | None = None,
    progress: bool = False,
    runtime: str = "torch",
) -> np.ndarray:
    """(n, hidden) float32 mean-pooled features of texts under the base model, cached on disk.

    `load` returns (tokenizer, model) and is called only when something must be embedded.
    `runtime`: "torch", "onnxruntime" or "auto" (recsys.encoder.onnx; the exported graph is
    cached in cache_dir beside the features)."""
    base_load = load or (lambda: bb.load_backbone(model_name, device))

    def load_for_runtime() -> tuple[Any, Any]:
        tokenizer, model = base_load()
        return tokenizer, for_runtime(model, runtime, device, cache_dir)

    load = load_for_runtime
    hashes = text_hashes(texts)
    if cache_dir is None:
        tokenizer, model = load()
        return bb.pooled_embeddings(
            tokenizer, model, list(texts), max_length, batch_size, device, progress
        )
    prefix = f"{bb.model_hash(model_name)}-L{max_length}"
    path = Path(cache_dir) / f"{prefix}-{_set_hash(hashes)}.npz"
    if path.is_file():
        cached = _load_npz(path)
        if np.array_equal(cached["hashes"], hashes):
            return cached["features"]
    known = _earlier_rows(Path(cache_dir), prefix, path)
    missing = [n for n, h in enumerate(hashes.tolist()) if h not in known]
    fresh = np.zeros((0, 0), np.float32)
    if missing:
        tokenizer, model = load()
        fresh = bb.pooled_embeddings(
            tokenizer, model, [texts[n] for n in missing], max_length, batch_size, device, progress
        )
    width = fresh.shape[1] if missing else next(iter(known.values())).shape[0]
    features = np.empty((len(texts), width), dtype=np.float32)  # (n, hidden)
    for n, h in enumerate(hashes.tolist()):
        if h in known:
            features[n] = known[h]
    if missing:
        features[missing] = fresh
    _save_npz(path, hashes=hashes, features=features)
    return features


def _earlier_rows(cache_dir: Path, prefix: str, skip: Path) -> dict[str, np.ndarray]:
    """text hash -> feature row from the newest earlier cache file of the same model + length."""
    files = sorted(cache_dir.glob(f"{prefix}-*.npz"), key=lambda p: p.stat().st_mtime)
    files = [f for f in files if f != skip]
    if not files:
        return {}
    cached = _load_npz(files[-1])
    return dict(zip(cached["hashes"].tolist(), cached["features"], strict=True))


def pad_token_ids(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids (batch, longest) int64 and attention mask (batch, longest)."""
    longest = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for n, row in enumerate(ids):
        input_ids[n, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[n, : len(row)] = 1
    return input_ids, mask
