"""Encoder stage: the one text->vector cache and batch embedding through it; reads texts, writes
vectors under a cache directory.

Vectors are keyed by (namespace, text hash): the namespace names what computed them, e.g. a
trained encoder's hash (item vectors, <workdir>/cache/embeddings) or a base model's weights hash
and token limit (pooled features, recsys.encoder.features). Each call embeds only the texts the
cache has not seen under that namespace, so a nightly run over a catalog where 1% changed costs
~1% of the work. Layout: <directory>/<namespace>/<shard>/{keys.npy, vectors.npy}; a shard is
written to a temp directory and renamed into place (atomic), never modified, and merged when
shards pile up.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recsys.text.documents import text_hash

KEY_LENGTH = 16  # text_hash: sha256 hex, first 16 chars
KEY_DTYPE = f"<U{KEY_LENGTH}"
_ENCODER_HASH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # a safe directory name


class EmbeddingCacheError(ValueError):
    """A cache shard that cannot be read or a vector batch that cannot be stored."""


@dataclass(frozen=True)
class EmbedStats:
    """What one embed_texts call did. total == computed + reused; a text repeated within the
    call is computed once and its repeats count as reused."""

    total: int
    computed: int
    reused: int
    seconds: float

    def as_metrics(self, prefix: str = "embed_") -> dict[str, float]:
        return {f"{prefix}{key}": float(value) for key, value in asdict(self).items()}


class EmbeddingCache:
    """Vectors on disk under `directory`, keyed by (encoder_hash, text_hash).

    Any number of readers; one writer at a time per directory (the pipeline holds the work
    directory's lock), since compaction deletes the shards it merged.
    """

    def __init__(self, directory: str | Path, max_shards: int = 16):
        self.directory = Path(directory)  # created on the first add, not here
        self.max_shards = max_shards

    def encoder_hashes(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and _shards(p))

    def _encoder_dir(self, encoder_hash: str) -> Path:
        if not _ENCODER_HASH.fullmatch(encoder_hash):
            raise EmbeddingCacheError(
                f"encoder hash must be letters, digits, '_', '-', '.', found {encoder_hash!r}"
            )
        return self.directory / encoder_hash

    def _shard_dirs(self, encoder_hash: str) -> list[Path]:
        return _shards(self._encoder_dir(encoder_hash))

    def __len__(self) -> int:
        return sum(self.size(h) for h in self.encoder_hashes())

    def size(self, encoder_hash: str) -> int:
        """Number of distinct texts cached under one encoder."""
        keys = [_read_shard(s)[0] for s in self._shard_dirs(encoder_hash)]
        return int(np.unique(np.concatenate(keys)).size) if keys else 0

    def lookup(self, encoder_hash: str, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found (n,) bool, vectors (found.sum(), dim) float32) for the cached keys, in order."""
        wanted = _key_array(keys)  # (n,)
        shards = [_read_shard(s) for s in self._shard_dirs(encoder_hash)]
        if not shards or wanted.size == 0:
            dim = shards[0][1].shape[1] if shards else 0
            return np.zeros(wanted.size, dtype=bool), np.empty((0, dim), dtype=np.float32)
        all_keys = np.concatenate([k for k, _ in shards])  # (m,)
        shard_of = np.concatenate([np.full(len(k), i) for i, (k, _) in enumerate(shards)])
        row_of = np.concatenate([np.arange(len(k)) for k, _ in shards])
        order = np.argsort(all_keys, kind="stable")
        pos = np.searchsorted(all_keys, wanted, sorter=order).clip(max=all_keys.size - 1)
        hit = order[pos]  # (n,) candidate position in all_keys
        found = all_keys[hit] == wanted
        out = np.empty((int(found.sum()), shards[0][1].shape[1]), dtype=np.float32)
        hit_shard, hit_row = shard_of[hit[found]], row_of[hit[found]]
        for i, (_, vectors) in enumerate(shards):  # gather rows shard by shard from the mmaps
            mine = hit_shard == i
            out[mine] = vectors[hit_row[mine]]
        return found, out

    def add(self, encoder_hash: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store new vectors as one shard (atomic rename); merge when shards exceed max_shards."""
        keys_array = _key_array(keys)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != keys_array.size:
            raise EmbeddingCacheError(
                f"add({encoder_hash}): expected vectors of shape ({keys_array.size}, dim), "
                f"found {vectors.shape}"
            )
        if keys_array.size == 0:
            return
        existing = self._shard_dirs(encoder_hash)
        if existing:
            dim = _read_shard(existing[0])[1].shape[1]
            if dim != vectors.shape[1]:
                raise EmbeddingCacheError(
                    f"add({encoder_hash}): vectors have dim {vectors.shape[1]}, but the cache "
                    f"under {self._encoder_dir(encoder_hash)} holds dim {dim}"
                )
        _write_shard(self._encoder_dir(encoder_hash), keys_array, vectors)
        if len(existing) + 1 > self.max_shards:
            self.compact(encoder_hash)

    def compact(self, encoder_hash: str, keep: Sequence[str] | None = None) -> int:
        """Merge all shards of one encoder into one, keeping only `keep` keys when given.

        Returns the number of vectors kept. Crash-safe: the merged shard is renamed into place
        before the old ones are deleted, and duplicate keys hold identical vectors.
        """
        shards = self._shard_dirs(encoder_hash)
        if not shards:
            return 0
        keys = np.concatenate([_read_shard(s)[0] for s in shards])
        unique = np.unique(keys)
        if keep is not None:
            unique = unique[np.isin(unique, _key_array(keep))]
        found, vectors = self.lookup(encoder_hash, unique.tolist())
        if found.any():
            _write_shard(self._encoder_dir(encoder_hash), unique[found], vectors)
        for shard in shards:
            shutil.rmtree(shard)
        return int(found.sum())

    def remove(self, encoder_hash: str) -> None:
        """Drop every vector of one encoder (e.g. after the encoder was retrained)."""
        shutil.rmtree(self._encoder_dir(encoder_hash), ignore_errors=True)


def _shards(encoder_dir: Path) -> list[Path]:
    if not encoder_dir.is_dir():
        return []
    return sorted(p for p in encoder_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _key_array(keys: Sequence[str]) -> np.ndarray:
    """(n,) fixed-width keys; a longer key would be silently cut by numpy, so it is refused."""
    array = np.asarray(keys, dtype=KEY_DTYPE)
    longest = max((len(k) for k in keys), default=0)
    if longest > KEY_LENGTH:
        raise EmbeddingCacheError(
            f"text hashes must have at most {KEY_LENGTH} characters, found one of {longest}"
        )
    return array


def _read_shard(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys (m,), vectors (m, dim) memory-mapped) of one shard, validated; no pickle."""
    try:
        keys = np.load(shard / "keys.npy", allow_pickle=False)
        vectors = np.load(shard / "vectors.npy", allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise EmbeddingCacheError(f"embedding cache shard {shard} cannot be read: {exc}") from exc
    if (
        keys.ndim != 1
        or vectors.ndim != 2
        or keys.shape[0] != vectors.shape[0]
        or vectors.dtype != np.float32
    ):
        raise EmbeddingCacheError(
            f"embedding cache shard {shard}: expected keys (m,) and float32 vectors (m, dim), "
            f"found {keys.shape} and {vectors.dtype} {vectors.shape}"
        )
    return keys, vectors


def _write_shard(encoder_dir: Path, keys: np.ndarray, vectors: np.ndarray) -> Path:
    encoder_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=encoder_dir))  # hidden: never read as a shard
    np.save(tmp / "keys.npy", keys, allow_pickle=False)
    np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
    for name in ("keys.npy", "vectors.npy"):
        with open(tmp / name, "rb") as handle:
            os.fsync(handle.fileno())
    final = encoder_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"  # sorts by age
    os.rename(tmp, final)
    return final


def embed_texts(
    texts: list[str],
    encode_fn: Callable[[list[str]], np.ndarray],
    encoder_hash: str,
    cache: EmbeddingCache | None,
) -> tuple[np.ndarray, EmbedStats]:
    """(len(texts), dim) float32 vectors; only texts not cached under encoder_hash are encoded.

    `encoder_hash` must change whenever the vectors would (weights, max_length, pooling):
    it is the only thing that tells an old vector from a new one.
    """
    start = time.perf_counter()
    if not texts:
        return np.empty((0, 0), dtype=np.float32), EmbedStats(0, 0, 0, 0.0)
    hashes = _hash_texts(texts)
    text_of = dict(zip(hashes, texts, strict=True))
    unique = list(text_of)  # distinct texts, first occurrence order
    if cache is not None:
        found, cached = cache.lookup(encoder_hash, unique)  # (n_unique,), (n_found, dim)
    else:
        found, cached = np.zeros(len(unique), dtype=bool), np.empty((0, 0), dtype=np.float32)
    missing = [h for h, f in zip(unique, found, strict=True) if not f]
    computed = _encode_checked(encode_fn, [text_of[h] for h in missing], encoder_hash)
    if cache is not None and missing:
        cache.add(encoder_hash, missing, computed)
    dim = computed.shape[1] if missing else cached.shape[1]
    by_unique = np.empty((len(unique), dim), dtype=np.float32)  # (n_unique, dim)
    if found.any():
        by_unique[found] = cached
    if missing:
        by_unique[~found] = computed
    position = {h: i for i, h in enumerate(unique)}
    vectors = by_unique[[position[h] for h in hashes]]  # (n, dim)
    stats = EmbedStats(
        total=len(texts),
        computed=len(missing),
        reused=len(texts) - len(missing),
        seconds=time.perf_counter() - start,
    )
    return vectors, stats


def _hash_texts(texts: list[str]) -> list[str]:
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{row}]: expected str, found {type(text).__name__}")
    return [text_hash(t) for t in texts]


def _encode_checked(
    encode_fn: Callable[[list[str]], np.ndarray], texts: list[str], encoder_hash: str
) -> np.ndarray:
    """encode_fn(texts) as float32, checked: one finite row per text (NaNs must not be cached)."""
    if not texts:
        return np.empty((0, 0), dtype=np.float32)
    vectors = np.asarray(encode_fn(texts), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise EmbeddingCacheError(
            f"encoder {encoder_hash}: expected ({len(texts)}, dim) vectors, found {vectors.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise EmbeddingCacheError(
            f"encoder {encoder_hash}: non-finite vectors for {bad.size} of the {len(texts)} "
            f"texts encoded, e.g. {texts[int(bad[0])][:60]!r}"
        )
    return vectors
