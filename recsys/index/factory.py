"""Index stage: which FAISS index a catalog gets, and building it (factory string, train, add).

Reads the index config and unit item vectors (n_items, dim); writes a trained, filled FAISS index.
Tiers of "auto" (figures: BENCHMARKS.md, "Index tiers"): exact Flat up to exact_max_items, then
IVF-PQ whose candidates are re-ranked exactly from the float vectors the index stores ("ivfpq": a
FAISS IndexRefineFlat over an IndexIVFPQ); an HNSW32 tier in between only when hnsw_max_items is
raised above exact_max_items (by default it is not: see IndexConfig.hnsw_max_items).
"""

from __future__ import annotations

import math

import numpy as np

from recsys.config import IndexConfig
from recsys.index.backend import faiss

MIN_POINTS_PER_CENTROID = 39  # FAISS k-means warns below this many training points per centroid
DIMS_PER_PQ_CODE = 4  # PQ sub-vector width: dim 128 -> 32 one-byte codes per item
TRAIN_POINTS_PER_LIST = 64  # IVF k-means sample (FAISS's own cap: 256); 1M items: 256k points
TRAIN_POINTS_MIN = 65_536  # what PQ training samples at most (256 centroids x 256 points)


def resolve_factory(config: IndexConfig, n_items: int, dim: int) -> str:
    """The factory string for `config.factory` over n_items vectors of `dim`.

    "auto": Flat up to exact_max_items, HNSW32 up to hnsw_max_items (if larger), then IVF-PQ;
    "ivf": IVF{4 sqrt(n)},Flat; "ivfpq": the IVF-PQ tier; anything else is a FAISS factory string.
    """
    factory = config.factory
    if factory == "auto":
        if n_items <= config.exact_max_items:
            return "Flat"
        factory = "HNSW32" if n_items <= config.hnsw_max_items else "ivfpq"
    if factory == "ivf":
        return f"IVF{ivf_lists(n_items)},Flat"
    if factory == "ivfpq":
        m, nbits = pq_shape(n_items, dim)
        # np: no polysemous training (12x the training time, only for Hamming-filtered search)
        return f"IVF{ivf_lists(n_items)},PQ{m}x{nbits}np,RFlat"
    return factory


def ivf_lists(n_items: int) -> int:
    """Inverted lists: the rule of thumb 4 sqrt(n), but k-means wants >= 39 points per list."""
    return max(1, min(int(4 * math.sqrt(n_items)), n_items // MIN_POINTS_PER_CENTROID))


def pq_shape(n_items: int, dim: int) -> tuple[int, int]:
    """(sub-quantizers m, bits per code) of the IVF-PQ tier.

    m: the largest divisor of dim that is <= dim / 4 (FAISS needs dim % m == 0); 8 bits per code
    (256 centroids per sub-quantizer) once there are 39 * 256 vectors to train them, fewer bits
    (down to 4) on smaller catalogs so each centroid still gets its 39 training points.
    """
    target = max(1, dim // DIMS_PER_PQ_CODE)
    m = max(d for d in range(1, target + 1) if dim % d == 0)
    per_centroid = max(1, n_items // MIN_POINTS_PER_CENTROID)
    nbits = min(8, max(4, int(math.log2(per_centroid))))
    return m, nbits


def create_index(vectors: np.ndarray, config: IndexConfig) -> tuple[faiss.Index, str]:
    """(trained index holding `vectors`, its factory string) for unit vectors (n_items, dim)."""
    n, dim = vectors.shape
    factory = resolve_factory(config, n, dim)
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"index factory {factory!r} (dim {dim}): faiss refused it: {exc}"
        ) from None
    if not index.is_trained:
        try:
            _train(index, vectors, config)
        except RuntimeError as exc:
            raise ValueError(
                f"index factory {factory!r}: training on {n} item vectors failed "
                f"(IVF needs at least as many vectors as lists): {exc}"
            ) from None
    index.add(vectors)
    return index, factory


def _train(index: faiss.Index, vectors: np.ndarray, config: IndexConfig) -> None:
    """Train on a seeded sample of TRAIN_POINTS_PER_LIST points per IVF list; an IVF's k-means
    assigns its points on the GPU when faiss-gpu has one (the CPU index is kept: the PQ, the
    lists and every search stay where the config puts them)."""
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.base_index) if isinstance(top, faiss.IndexRefine) else top
    if isinstance(inner, faiss.IndexIVF):
        vectors = _training_sample(vectors, inner.nlist)
    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    if not isinstance(inner, faiss.IndexIVF) or config.use_gpu == "never" or gpus == 0:
        index.train(vectors)
        return
    res = faiss.StandardGpuResources()  # must outlive training
    assign = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatIP(inner.d))  # (nlist, dim) centroids
    inner.clustering_index = assign
    try:
        index.train(vectors)
    finally:
        inner.clustering_index = None


def _training_sample(vectors: np.ndarray, n_lists: int) -> np.ndarray:
    """A seeded subset (rows in their original order) big enough for the IVF k-means and the PQ;
    the whole set when it is smaller. Training on all of 1M items costs minutes for nothing."""
    size = max(TRAIN_POINTS_PER_LIST * n_lists, TRAIN_POINTS_MIN)
    if len(vectors) <= size:
        return vectors
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), size=size, replace=False))
    return vectors[rows]  # (size, dim)
