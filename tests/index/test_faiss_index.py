"""VectorIndex: exact = brute force, ANN recall, exclusions and allow-masks keep k, save/load."""

from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexConfig
from recsys.index import VectorIndex
from recsys.tracking import NullTracker

FACTORIES = ["Flat", "ivf", "HNSW32", "ivfpq"]  # ivfpq: IVF-PQ + exact re-rank


def clustered(n=2000, dim=16, clusters=40, seed=0):
    """Seeded vectors around `clusters` centres: the shape real item embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(clusters, size=n)] + 0.35 * rng.normal(size=(n, dim))
    return points.astype(np.float32)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors, queries, k, exclude=None, allowed=None):
    """Exact top-k by cosine with -inf for removed items: the reference every test compares to."""
    scores = unit(queries) @ unit(vectors).T  # (n, n_items)
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    for row, items in enumerate(exclude or []):
        scores[row, items] = -np.inf
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    val = np.take_along_axis(scores, idx, axis=1)
    return np.where(np.isfinite(val), idx, -1), val


@pytest.fixture(scope="module")
def data():
    vectors = clustered()
    return vectors, vectors[:40] + 0.1  # queries near items, not identical


@pytest.fixture(scope="module")
def trackers():
    return {f: NullTracker() for f in FACTORIES}


@pytest.fixture(scope="module")
def indexes(data, trackers):
    configs = {f: IndexConfig(factory=f, recall_sample=300) for f in FACTORIES}
    return {f: VectorIndex.build(data[0], configs[f], trackers[f]) for f in FACTORIES}


def test_exact_search_equals_brute_force(data, indexes):
    vectors, queries = data
    idx, val = indexes["Flat"].search(queries, 7)
    ref_idx, ref_val = brute_force(vectors, queries, 7)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, atol=1e-5)
    assert idx.dtype == np.int64 and val.dtype == np.float32
    assert indexes["Flat"].measure_recall(vectors) == 1.0


@pytest.mark.parametrize("factory", ["ivf", "HNSW32", "ivfpq"])
def test_ann_recall_at_10_is_high_and_logged(data, indexes, trackers, factory):
    index, tracker = indexes[factory], trackers[factory]
    assert not index.is_exact
    recall = index.measure_recall(data[0], k=10, n_queries=300)
    assert recall >= 0.95, f"{index.factory}: recall@10 {recall}"
    logged = tracker.metrics["index.recall_at_10"][0][1]
    assert logged == index.build_recall and logged >= 0.95
    assert tracker.params["index.factory"] == index.factory


@pytest.mark.parametrize("factory", FACTORIES)
def test_exclusions_honoured_and_k_still_returned(data, indexes, factory):
    vectors, queries = data
    index = indexes[factory]
    # exclude each query's 30 exact nearest items and a few bogus ids: more than k = 10
    nearest, _ = brute_force(vectors, queries, 30)
    exclude = [np.concatenate([row, [-1, 10**6]]) for row in nearest]
    idx, val = index.search(queries, 10, exclude=exclude)
    assert (idx >= 0).all() and np.isfinite(val).all()
    for row, banned in zip(idx, nearest, strict=True):
        assert not set(row.tolist()) & set(banned.tolist())
    assert (np.diff(val, axis=1) <= 1e-6).all()
    if factory == "Flat":
        ref, _ = brute_force(vectors, queries, 10, exclude=[r for r in nearest])
        np.testing.assert_array_equal(idx, ref)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("path", ["selector", "subset"])
def test_allowed_mask_honoured_and_k_still_returned(data, indexes, factory, path):
    vectors, queries = data
    index = indexes[factory]
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[np.random.default_rng(1).choice(len(vectors), 150, replace=False)] = True
    index.exact_subset_max = 0 if path == "selector" else 10_000
    try:
        idx, val = index.search(queries, 10, allowed=allowed)
    finally:
        index.exact_subset_max = VectorIndex.exact_subset_max
    assert (idx >= 0).all() and allowed[idx].all()
    ref, ref_val = brute_force(vectors, queries, 10, allowed=allowed)
    if factory == "Flat" or path == "subset":  # exact either way
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_allclose(val, ref_val, atol=1e-5)
    else:
        hits = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(idx, ref, strict=True)])
        assert hits >= 0.9


@pytest.mark.parametrize("factory", FACTORIES)
def test_pads_when_fewer_than_k_remain(data, indexes, factory):
    vectors, queries = data
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[[5, 6, 7, 8]] = True
    exclude = [np.array([5])] * len(queries)
    idx, val = indexes[factory].search(queries, 6, exclude=exclude, allowed=allowed)
    assert (np.sort(idx[:, :3], axis=1) == [6, 7, 8]).all()
    assert (idx[:, 3:] == -1).all() and np.isneginf(val[:, 3:]).all()
    small = VectorIndex.build(vectors[:4], IndexConfig(factory="Flat"))
    idx, val = small.search(queries[:2], 6)
    assert (idx[:, 4:] == -1).all() and np.isneginf(val[:, 4:]).all() and (idx[:, :4] >= 0).all()


@pytest.mark.parametrize("factory", FACTORIES)
def test_save_load_round_trip(tmp_path, data, indexes, factory):
    vectors, queries = data
    index = indexes[factory]
    path = tmp_path / "items.faiss"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["items.faiss"]  # no temp file left behind
    loaded = VectorIndex.load(path)
    assert loaded.ntotal == index.ntotal and loaded.index_type == index.index_type
    exclude = [np.arange(3)] * len(queries)
    before, after = index.search(queries, 10, exclude), loaded.search(queries, 10, exclude)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def mapped_files() -> set[str]:
    """Paths of the files this process has memory-mapped (Linux /proc)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


@pytest.mark.parametrize("factory", FACTORIES)
def test_mmap_load_gives_identical_results(tmp_path, data, indexes, factory):
    vectors, queries = data
    path = tmp_path / "items.faiss"
    indexes[factory].save(path)
    copied = VectorIndex.load(path, mmap=False)
    assert str(path) not in mapped_files()
    mapped = VectorIndex.load(path)  # the default: what the API workers do
    assert mapped.mmapped and str(path) in mapped_files()
    allowed = np.arange(len(vectors)) % 4 != 0
    exclude = [np.arange(i, i + 20) for i in range(len(queries))]
    for kwargs in ({}, {"exclude": exclude}, {"allowed": allowed}):
        a, b = copied.search(queries, 10, **kwargs), mapped.search(queries, 10, **kwargs)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_adding_to_a_mapped_index_copies_it_and_leaves_the_file(tmp_path, data):
    vectors, _ = data
    path = tmp_path / "items.faiss"
    VectorIndex.build(vectors[:100], IndexConfig(factory="Flat")).save(path)
    before = path.read_bytes()
    index = VectorIndex.load(path)
    assert index.add(vectors[100:102]).tolist() == [100, 101]  # FAISS alone would abort here
    assert not index.mmapped and index.ntotal == 102 and path.read_bytes() == before
    idx, _ = index.search(vectors[101:102], 1)
    assert idx[0, 0] == 101


def test_search_parameters_come_from_config_and_survive_save(tmp_path, data):
    index = VectorIndex.build(data[0][:500], IndexConfig(factory="ivf", nprobe=3))
    index.save(tmp_path / "ivf.faiss")
    assert VectorIndex.load(tmp_path / "ivf.faiss").config.nprobe == 3
    assert VectorIndex.load(tmp_path / "ivf.faiss", IndexConfig(nprobe=9)).config.nprobe == 9
    hnsw = VectorIndex.build(data[0][:300], IndexConfig(factory="HNSW16", ef_search=40))
    hnsw.save(tmp_path / "hnsw.faiss")
    assert VectorIndex.load(tmp_path / "hnsw.faiss").config.ef_search == 40


def test_add_appends_items(data):
    vectors, _ = data
    index = VectorIndex.build(vectors[:100], IndexConfig(factory="Flat"))
    new = index.add(vectors[100:103])
    assert new.tolist() == [100, 101, 102] and index.ntotal == 103
    idx, _ = index.search(vectors[101:102], 1)
    assert idx[0, 0] == 101


def test_bad_input_is_named(data, indexes):
    vectors, queries = data
    index = indexes["Flat"]
    with pytest.raises(ValueError, match="queries: expected dim 16, found 8"):
        index.search(queries[:, :8], 3)
    with pytest.raises(ValueError, match=r"allowed: expected a bool mask of shape \(2000,\)"):
        index.search(queries, 3, allowed=np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match=r"exclude: expected one array .* \(40\), found 2"):
        index.search(queries, 3, exclude=[np.array([1])] * 2)
    bad = vectors[:10].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"item vectors: non-finite values in rows \[3\]"):
        VectorIndex.build(bad)
    with pytest.raises(ValueError, match="'NoSuchIndex'.*faiss refused"):
        VectorIndex.build(vectors, IndexConfig(factory="NoSuchIndex"))
    with pytest.raises(ValueError, match="'IVF64,Flat': training on 20 item vectors failed"):
        VectorIndex.build(vectors[:20], IndexConfig(factory="IVF64,Flat"))


def test_wrapped_index_post_filters_the_mask_and_still_returns_k(data):
    # a random rotation keeps inner products, so this wrapper (no IDSelector, no reconstruct
    # path; the GPU path filters the same way) must give the exact answer
    vectors, queries = data
    index = VectorIndex.build(vectors, IndexConfig(factory="RR16,Flat", recall_sample=50))
    allowed = np.arange(len(vectors)) % 3 == 0
    exclude = [np.flatnonzero(allowed)[:25]] * len(queries)
    idx, val = index.search(queries, 10, exclude=exclude, allowed=allowed)
    ref, ref_val = brute_force(vectors, queries, 10, exclude=exclude, allowed=allowed)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(val, ref_val, atol=1e-5)
