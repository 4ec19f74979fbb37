"""Batch embedding on Ray (recsys.encoder.distributed over recsys.compute) against the local path:
the sample's item documents plus 5k generated texts, part of them cached beforehand, through an
actor pool of 2 on the session's local Ray cluster — same vectors, same cache keys and counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import SAMPLE

from recsys.compute import ROW, ComputeError, restore_order
from recsys.config import ComputeConfig, EncoderConfig, TextConfig
from recsys.data.loaders import load_dataset
from recsys.encoder.backbone import model_hash
from recsys.encoder.distributed import remote_item_features
from recsys.encoder.embed import EmbeddingCache, embed_texts
from recsys.encoder.model import TwoTowerEncoder, build_towers
from recsys.text.documents import item_documents

WORDS = "the red robot love story prince ghost ship jazz city night war river moon".split()


def _texts() -> list[str]:
    """The sample's item documents + 5,000 generated texts of 2-40 words (varied lengths, so
    length-sorted batches differ between the two paths)."""
    rng = np.random.default_rng(0)
    generated = [
        " ".join(rng.choice(WORDS, int(rng.integers(2, 40)))) + f" #{i}" for i in range(5000)
    ]
    return item_documents(load_dataset(SAMPLE), TextConfig()) + generated


@pytest.fixture(scope="module")
def saved_encoder(tiny_bert_dir, tmp_path_factory) -> Path:
    """A frozen-path encoder over the tiny BERT, saved: the actors load it from its directory."""
    torch.manual_seed(0)
    config = EncoderConfig(model_name_or_path=tiny_bert_dir, dim=16, seq_heads=2, max_length=32)
    adapter, user = build_towers(config, 32, "sequence")
    encoder = TwoTowerEncoder(
        config, adapter, user, tiny_bert_dir, model_hash(tiny_bert_dir), "frozen"
    )
    directory = tmp_path_factory.mktemp("encoder")
    encoder.save(directory)
    return directory


def _embed(encoder, root: Path, texts: list[str], embed_fn=None):
    """The nightly's embed step: item vectors cached by text, pooled features by text."""
    cache = EmbeddingCache(root / "embeddings")

    def encode(batch: list[str]) -> np.ndarray:
        return encoder.encode_items(batch, feature_cache=root / "features", embed_fn=embed_fn)

    return embed_texts(texts, encode, encoder.encoder_hash, cache)


def _cache_keys(directory: Path) -> dict[str, list[str]]:
    cache = EmbeddingCache(directory)
    out = {}
    for name in cache.encoder_hashes():
        shards = sorted((directory / name).iterdir())
        out[name] = sorted(np.concatenate([np.load(s / "keys.npy") for s in shards]).tolist())
    return out


@pytest.mark.slow
def test_ray_embedding_matches_local(ray_cluster, saved_encoder, tmp_path):
    texts = _texts()
    encoder = TwoTowerEncoder.load(saved_encoder)
    rng = np.random.default_rng(1)
    warm = [texts[i] for i in sorted(rng.choice(len(texts), 1500, replace=False))]
    local_root, ray_root = tmp_path / "local", tmp_path / "ray"
    for root in (local_root, ray_root):  # the same texts cached beforehand in both
        _embed(encoder, root, warm)

    local, local_stats = _embed(encoder, local_root, texts)
    compute = ComputeConfig(backend="ray", workers=2, batch_size=256)  # ~15 blocks, 2 actors
    fan_out = remote_item_features(encoder, saved_encoder, ray_root / "features", compute)
    remote, ray_stats = _embed(encoder, ray_root, texts, fan_out)

    assert remote.shape == local.shape == (len(texts), 16)
    assert float(np.abs(remote - local).max()) <= 1e-5
    assert (ray_stats.computed, ray_stats.reused) == (local_stats.computed, local_stats.reused)
    assert 0 < ray_stats.computed < len(texts)  # only the uncached texts were embedded
    for cache in ("embeddings", "features"):
        assert _cache_keys(ray_root / cache) == _cache_keys(local_root / cache)
    onnx_files = sorted(p.name for p in (ray_root / "features").glob("*.onnx"))
    assert len(onnx_files) == 1  # exported once, by the driver


def test_restore_order_sorts_rows_and_refuses_lost_or_repeated_ones():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 3))
    blocks = [np.arange(0, 4), np.arange(4, 7), np.arange(7, 10)]
    parts = [{ROW: rows, "v": values[rows]} for rows in reversed(blocks)]  # arrived out of order
    assert np.array_equal(restore_order(parts, 10)["v"], values)
    with pytest.raises(ComputeError, match="each row id 0..9 exactly once"):
        restore_order(parts[:2], 10)
    with pytest.raises(ComputeError, match="exactly once"):
        restore_order([*parts, parts[0]], 10)
