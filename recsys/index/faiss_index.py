"""Index stage: a FAISS inner-product index over L2-normalised item vectors.

Reads item vectors (n_items, dim) float32; writes one FAISS index file (write to temp + rename).
Top-k always honours per-query exclusions and an allow-mask and still returns k results: an
allow-mask goes to FAISS as an IDSelector (small masks are searched exactly), exclusions are
over-fetched and the search retried with a larger k for rows that came back short.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from recsys.config import IndexConfig
from recsys.index.filtering import Exclusions, compact
from recsys.tracking import Tracker
from recsys.vectors import normalize_rows

log = logging.getLogger(__name__)

EXACT_SUBSET_MAX = 4096  # allow-masks with at most this many items: exact search over them
GPU_MAX_K = 2048  # FAISS GPU kernels return at most this many neighbours per query


def resolve_factory(factory: str, n_items: int, exact_max_items: int) -> str:
    """ "auto": exact Flat up to exact_max_items, else HNSW32; "ivf": IVF{4 sqrt(n)},Flat."""
    if factory == "auto":
        return "Flat" if n_items <= exact_max_items else "HNSW32"
    if factory == "ivf":
        # Rule of thumb 4 sqrt(n) lists, but k-means wants >= 39 training points per list.
        nlist = max(1, min(int(4 * math.sqrt(n_items)), n_items // 39))
        return f"IVF{nlist},Flat"
    return factory


def normalize(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """(n, dim) float32 C-contiguous copy with unit rows; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (n, dim), found shape {vectors.shape}")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise ValueError(f"{what}: non-finite values in rows {bad[:5].tolist()}")
    return np.ascontiguousarray(normalize_rows(vectors))


class VectorIndex:
    """A FAISS index (METRIC_INNER_PRODUCT) over unit item vectors; item_idx == FAISS label."""

    exact_subset_max = EXACT_SUBSET_MAX  # per instance, so tests can force the selector path

    def __init__(self, index: faiss.Index, factory: str, config: IndexConfig | None = None):
        self.config = config or IndexConfig()
        self.index = index  # the CPU index: saved, reconstructed from, and added to
        self.factory = factory
        self.build_recall: float | None = None
        top = faiss.downcast_index(index)
        self._ivf = top if isinstance(top, faiss.IndexIVF) else None
        self._hnsw = top if isinstance(top, faiss.IndexHNSW) else None
        self._flat = isinstance(top, faiss.IndexFlat)
        if self._ivf is not None:
            self._ivf.nprobe = min(self.config.nprobe, self._ivf.nlist)
            self._ivf.make_direct_map()  # lets small allow-masks reconstruct their vectors
        elif self._hnsw is not None:
            self._hnsw.hnsw.efSearch = self.config.ef_search
        self._gpu_res, self._searcher = self._to_gpu(index)

    def _to_gpu(self, index: faiss.Index) -> tuple[object | None, faiss.Index]:
        """A GPU clone to search with when faiss has GPU support and a GPU is present."""
        gpu_ok = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        movable = self._flat or self._ivf is not None  # HNSW and wrappers have no GPU version
        if self.config.use_gpu == "never" or not gpu_ok or not movable:
            return None, index
        res = faiss.StandardGpuResources()
        return res, faiss.index_cpu_to_gpu(res, 0, index)

    @property
    def on_gpu(self) -> bool:
        return self._gpu_res is not None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def is_exact(self) -> bool:
        return self._flat

    @property
    def index_type(self) -> str:
        """FAISS class name, for manifests (a factory-built and a loaded Flat both: IndexFlatIP)."""
        return "IndexFlatIP" if self._flat else type(faiss.downcast_index(self.index)).__name__

    @classmethod
    def build(
        cls, vectors: np.ndarray, config: IndexConfig | None = None, tracker: Tracker | None = None
    ) -> VectorIndex:
        """Normalise, train (IVF), add; measure ANN recall@10 against exact search and log it."""
        config = config or IndexConfig()
        vectors = normalize(vectors, "item vectors")  # (n_items, dim)
        n, dim = vectors.shape
        factory = resolve_factory(config.factory, n, config.exact_max_items)
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(
                f"index factory {factory!r} (dim {dim}): faiss refused it: {exc}"
            ) from None
        if not index.is_trained:
            try:
                index.train(vectors)
            except RuntimeError as exc:
                raise ValueError(
                    f"index factory {factory!r}: training on {n} item vectors failed "
                    f"(IVF needs at least as many vectors as lists): {exc}"
                ) from None
        index.add(vectors)
        built = cls(index, factory, config)
        built.build_recall = built.measure_recall(vectors, k=10)
        log.info("built %s over %d x %d, recall@10 %.4f", factory, n, dim, built.build_recall)
        if tracker is not None:
            tracker.log_params({"index.factory": factory, "index.n_items": n, "index.dim": dim})
            tracker.log_metrics({"index.recall_at_10": built.build_recall})
        return built

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append items (labels continue from ntotal); returns their item_idx (m,)."""
        vectors = normalize(vectors, "added vectors")
        self._check_dim(vectors, "added vectors")
        start = self.ntotal
        self.index.add(vectors)
        if self.on_gpu:
            self._searcher.add(vectors)
        return np.arange(start, self.ntotal, dtype=np.int64)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product with the normalised queries (n, dim): item_idx (n, k) int64
        padded with -1, scores (n, k) float32 padded with -inf. `exclude[i]`: item_idx never
        returned for query i; `allowed`: bool mask (ntotal,) of items that may be returned."""
        queries = normalize(queries, "queries")  # (n, dim)
        self._check_dim(queries, "queries")
        n = queries.shape[0]
        excl = Exclusions(exclude, n, self.ntotal)
        mask = self._check_allowed(allowed)
        out_idx = np.full((n, k), -1, dtype=np.int64)
        out_val = np.full((n, k), -np.inf, dtype=np.float32)
        if n == 0 or k <= 0 or self.ntotal == 0:
            return out_idx, out_val
        if mask is not None and self._selectable and mask.sum() <= self.exact_subset_max:
            return self._search_subset(queries, k, excl, np.flatnonzero(mask))
        use_selector = mask is not None and not self.on_gpu and self._selectable
        reachable = int(mask.sum()) if use_selector else self.ntotal
        limit = min(reachable, GPU_MAX_K) if self.on_gpu else reachable
        kk = min(k + excl.max_count, limit)  # enough for exact indexes in one pass
        pending = np.arange(n)
        while pending.size:
            exhaustive = kk >= limit
            scores, labels = self._raw_search(queries[pending], kk, mask, use_selector, exhaustive)
            invalid = excl.mask(pending, labels)
            if mask is not None and not use_selector:
                invalid |= ~mask[np.maximum(labels, 0)]  # post-filter the allow-mask
            idx, val, full = compact(labels, scores, invalid, k)
            out_idx[pending], out_val[pending] = idx, val
            if exhaustive:
                break
            pending = pending[~full]  # rows that lost too many results: fetch more
            kk = min(2 * kk, limit)
        return out_idx, out_val

    @property
    def _selectable(self) -> bool:
        """FAISS takes an IDSelector for these top-level types (wrappers are post-filtered)."""
        return self._flat or self._ivf is not None or self._hnsw is not None

    def _raw_search(
        self,
        queries: np.ndarray,
        kk: int,
        mask: np.ndarray | None,
        selector: bool,
        exhaustive: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS call: scores (n, kk), labels (n, kk)."""
        if self.on_gpu:
            return self._searcher.search(queries, kk)
        params, keep = None, None
        if selector:
            keep = np.packbits(mask, bitorder="little")  # must outlive the search call
            sel = faiss.IDSelectorBitmap(mask.size, faiss.swig_ptr(keep))
        if self._ivf is not None:  # the last pass scans every list, so nothing reachable is lost
            params = faiss.SearchParametersIVF()
            params.nprobe = self._ivf.nlist if exhaustive else self._ivf.nprobe
        elif self._hnsw is not None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.config.ef_search, kk)
        elif selector:
            params = faiss.SearchParameters()
        if selector:
            params.sel = sel
        scores, labels = self.index.search(queries, kk, params=params)
        del keep
        return scores, labels

    def _search_subset(
        self, queries: np.ndarray, k: int, excl: Exclusions, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the few allowed items, from their stored (reconstructed) vectors."""
        if ids.size == 0:
            n = len(queries)
            return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
        vectors = self.index.reconstruct_batch(ids)  # (m, dim)
        scores = queries @ vectors.T  # (n, m)
        labels = np.broadcast_to(ids, scores.shape)
        invalid = excl.mask(np.arange(len(queries)), labels)
        order = np.argsort(np.where(invalid, np.inf, -scores), axis=1, kind="stable")
        return compact(
            np.take_along_axis(labels, order, axis=1),
            np.take_along_axis(scores, order, axis=1),
            np.take_along_axis(invalid, order, axis=1),
            k,
        )[:2]

    def measure_recall(
        self, vectors: np.ndarray, k: int = 10, n_queries: int | None = None
    ) -> float:
        """Mean recall@k of this index vs exact search, queries = a seeded sample of the indexed
        `vectors` (n_items, dim). Exact indexes return 1.0 without measuring."""
        if self.is_exact:
            return 1.0
        vectors = normalize(vectors, "vectors")
        n = vectors.shape[0]
        k = min(k, n)
        n_queries = min(n_queries or self.config.recall_sample, n)
        rng = np.random.default_rng(0)
        queries = vectors[rng.choice(n, size=n_queries, replace=False)]  # (q, dim)
        found, _ = self.search(queries, k)
        hits = 0
        step = max(1, (1 << 24) // max(n, 1))  # bound the (step, n) score block to ~64 MB
        for start in range(0, n_queries, step):
            block = queries[start : start + step] @ vectors.T  # (step, n)
            truth = np.argpartition(-block, k - 1, axis=1)[:, :k]
            for row, true_ids in enumerate(truth):
                hits += np.intersect1d(true_ids, found[start + row]).size
        return hits / (n_queries * k)

    def save(self, path: Path) -> None:
        """Write the (CPU) index to `path` atomically: temp file in the same folder, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: Path, config: IndexConfig | None = None) -> VectorIndex:
        """Read an index written by save(); without `config`, keep its stored nprobe / efSearch."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FAISS index file not found: {path}")
        index = faiss.read_index(str(path))
        if config is None:
            top = faiss.downcast_index(index)
            stored = {}
            if isinstance(top, faiss.IndexIVF):
                stored["nprobe"] = top.nprobe
            elif isinstance(top, faiss.IndexHNSW):
                stored["ef_search"] = top.hnsw.efSearch
            config = IndexConfig(**stored)
        return cls(index, f"loaded:{type(faiss.downcast_index(index)).__name__}", config)

    def _check_dim(self, vectors: np.ndarray, what: str) -> None:
        if vectors.shape[1] != self.dim:
            raise ValueError(f"{what}: expected dim {self.dim}, found {vectors.shape[1]}")

    def _check_allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != bool or mask.shape != (self.ntotal,):
            raise ValueError(
                f"allowed: expected a bool mask of shape ({self.ntotal},), "
                f"found dtype {mask.dtype} shape {mask.shape}"
            )
        return mask


def build(
    vectors: np.ndarray, config: IndexConfig | None = None, tracker: Tracker | None = None
) -> VectorIndex:
    """Build a VectorIndex over item vectors (n_items, dim); see VectorIndex.build."""
    return VectorIndex.build(vectors, config, tracker)
