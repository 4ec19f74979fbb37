"""Batch embedding: the incremental cache reuses unchanged texts and recomputes changed ones."""

import numpy as np
import pytest
import torch

from recsys.encoder.backbone import load_backbone, model_hash, pooled_embeddings
from recsys.encoder.embed import EmbeddingCache, EmbeddingCacheError, embed_texts
from recsys.text.documents import text_hash

CATALOG = [
    f"item {n} {'red blue green'.split()[n % 3]} {'a b c d'.split()[n % 4]}" for n in range(40)
]


class Encoder:
    """The tiny BERT as an encode_fn that remembers which texts it was asked to encode."""

    def __init__(self, tokenizer, model):
        self.tokenizer, self.model = tokenizer, model
        self.seen: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.append(list(texts))
        return pooled_embeddings(self.tokenizer, self.model, texts, 16, 8, "cpu")


@pytest.fixture(scope="module")
def backbone(tiny_bert_dir):
    torch.set_num_threads(1)
    return load_backbone(tiny_bert_dir)


@pytest.fixture()
def encoder(backbone):
    return Encoder(*backbone)


@pytest.fixture()
def key(tiny_bert_dir):
    return model_hash(tiny_bert_dir) + "-len16"


def test_first_run_computes_all_second_reuses_all(encoder, key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    first, stats = embed_texts(CATALOG, encoder, key, cache)
    assert (stats.total, stats.computed, stats.reused) == (40, 40, 0)
    second, stats = embed_texts(CATALOG, encoder, key, cache)
    assert (stats.total, stats.computed, stats.reused) == (40, 0, 40)
    assert len(encoder.seen) == 1  # the second run never called the encoder
    uncached = encoder(CATALOG)
    np.testing.assert_array_equal(first, uncached)
    np.testing.assert_array_equal(second, uncached)
    assert cache.size(key) == 40


def test_changed_texts_are_the_only_ones_recomputed(encoder, key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    embed_texts(CATALOG, encoder, key, cache)
    changed = list(CATALOG)
    changed[3] += " new edition"
    changed[17] = "a brand new item"
    vectors, stats = embed_texts(changed, encoder, key, cache)
    assert (stats.computed, stats.reused) == (2, 38)
    assert sorted(encoder.seen[-1]) == sorted([changed[3], changed[17]])
    np.testing.assert_allclose(vectors, encoder(changed), atol=1e-6)


def test_cache_survives_reload(encoder, key, tmp_path):
    embed_texts(CATALOG[:25], encoder, key, EmbeddingCache(tmp_path / "cache"))
    reloaded = EmbeddingCache(tmp_path / "cache")
    vectors, stats = embed_texts(CATALOG, encoder, key, reloaded)
    assert (stats.computed, stats.reused) == (15, 25)
    np.testing.assert_allclose(vectors, encoder(CATALOG), atol=1e-6)


def test_keyed_by_encoder_hash(encoder, key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    embed_texts(CATALOG, encoder, key, cache)
    _, stats = embed_texts(CATALOG, encoder, "another-encoder", cache)
    assert (stats.computed, stats.reused) == (40, 0)
    assert cache.encoder_hashes() == sorted([key, "another-encoder"])
    cache.remove("another-encoder")
    assert cache.encoder_hashes() == [key]


def test_duplicates_are_computed_once_and_without_a_cache(encoder):
    texts = ["same text", "other", "same text", "same text"]
    vectors, stats = embed_texts(texts, encoder, "k", None)
    assert (stats.total, stats.computed, stats.reused) == (4, 2, 2)
    assert encoder.seen == [["same text", "other"]]
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert stats.as_metrics()["embed_computed"] == 2.0


def test_empty_input(encoder, tmp_path):
    vectors, stats = embed_texts([], encoder, "k", EmbeddingCache(tmp_path))
    assert vectors.shape[0] == 0 and stats.total == 0 and encoder.seen == []


def test_shards_are_merged_and_compaction_keeps_only_asked_keys(encoder, key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache", max_shards=3)
    for start in range(0, 40, 5):  # eight adds of five new texts each
        embed_texts(CATALOG[start : start + 5], encoder, key, cache)
        assert len(list((tmp_path / "cache" / key).iterdir())) <= 3
    found, vectors = cache.lookup(key, [text_hash(t) for t in CATALOG])
    assert found.all()
    np.testing.assert_allclose(vectors, encoder(CATALOG), atol=1e-6)
    kept = cache.compact(key, keep=[text_hash(t) for t in CATALOG[:10]])
    assert kept == 10 and cache.size(key) == 10
    found, _ = cache.lookup(key, [text_hash(t) for t in CATALOG])
    assert found.tolist() == [True] * 10 + [False] * 30


def test_encode_fn_output_is_checked_and_bad_vectors_are_not_cached(key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(EmbeddingCacheError, match=r"expected \(3, dim\) vectors, found \(2, 4\)"):
        embed_texts(["a", "b", "c"], lambda t: np.zeros((2, 4)), key, cache)

    def nan_on_b(texts):
        return np.array([[np.nan, 0.0] if t == "b" else [1.0, 0.0] for t in texts])

    with pytest.raises(
        EmbeddingCacheError, match="non-finite vectors for 1 of the 2 texts encoded, e.g. 'b'"
    ):
        embed_texts(["a", "b"], nan_on_b, key, cache)
    assert cache.size(key) == 0
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str"):
        embed_texts(["a", None], nan_on_b, key, cache)


def test_dimension_mismatch_and_bad_encoder_hash(key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cache.add(key, ["0" * 16], np.ones((1, 4)))
    with pytest.raises(EmbeddingCacheError, match="dim 8, but the cache .* holds dim 4"):
        cache.add(key, ["1" * 16], np.ones((1, 8)))
    with pytest.raises(EmbeddingCacheError, match="encoder hash must be"):
        cache.lookup("../escape", ["0" * 16])
    with pytest.raises(EmbeddingCacheError, match="at most 16 characters, found one of 17"):
        cache.add(key, ["0" * 17], np.ones((1, 4)))


def test_compacting_to_nothing_leaves_an_empty_cache(key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cache.add(key, ["0" * 16], np.ones((1, 4)))
    assert cache.compact(key, keep=[]) == 0
    assert cache.size(key) == 0 and cache.encoder_hashes() == []
    cache.add(key, ["1" * 16], np.ones((1, 8)))  # an empty cache takes any dim again
    assert cache.lookup(key, ["1" * 16])[0].tolist() == [True]


def test_corrupt_shard_is_named_and_temp_dirs_are_ignored(key, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cache.add(key, ["0" * 16, "1" * 16], np.ones((2, 4)))
    (tmp_path / "cache" / key / ".tmp-crashed").mkdir()  # a write interrupted before its rename
    found, vectors = cache.lookup(key, ["1" * 16, "2" * 16])
    assert found.tolist() == [True, False] and vectors.shape == (1, 4)
    (shard,) = [p for p in (tmp_path / "cache" / key).iterdir() if not p.name.startswith(".")]
    (shard / "vectors.npy").write_bytes(b"not numpy")
    with pytest.raises(EmbeddingCacheError, match=f"shard {shard} cannot be read"):
        cache.lookup(key, ["0" * 16])
