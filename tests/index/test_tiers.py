"""Index tiers: auto picks Flat / HNSW32 / IVF-PQ by size; IVF-PQ + exact re-rank; no faiss."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_faiss_index import brute_force, clustered

from recsys.config import IndexConfig
from recsys.index import VectorIndex, resolve_factory
from recsys.index.factory import ivf_lists, pq_shape
from recsys.tracking import NullTracker


def test_auto_tiers_by_catalog_size():
    default = IndexConfig()  # no HNSW tier: exact search, then IVF-PQ + re-rank
    assert resolve_factory(default, default.exact_max_items, 128) == "Flat"
    assert resolve_factory(default, default.exact_max_items + 1, 128).endswith("PQ32x8np,RFlat")
    config = IndexConfig(exact_max_items=1000, hnsw_max_items=5000)
    assert resolve_factory(config, 100, 16) == "Flat"
    assert resolve_factory(config, 1000, 16) == "Flat"
    assert resolve_factory(config, 1001, 16) == "HNSW32"
    assert resolve_factory(config, 5000, 16) == "HNSW32"
    assert resolve_factory(config, 5001, 16) == "IVF128,PQ4x7np,RFlat"  # 5001 // 39 = 128 lists
    assert resolve_factory(config, 1_000_000, 128) == "IVF4000,PQ32x8np,RFlat"
    # hnsw_max_items == exact_max_items: straight from exact search to IVF-PQ
    no_hnsw = IndexConfig(exact_max_items=1000, hnsw_max_items=1000)
    assert resolve_factory(no_hnsw, 1001, 16).endswith(",RFlat")


def test_named_and_explicit_factories():
    assert resolve_factory(IndexConfig(factory="ivf"), 10_000, 16) == "IVF256,Flat"  # n/39 < 400
    assert resolve_factory(IndexConfig(factory="ivfpq"), 10, 16) == "IVF1,PQ4x4np,RFlat"
    assert resolve_factory(IndexConfig(factory="IVF64,PQ8"), 10, 16) == "IVF64,PQ8"
    assert ivf_lists(1_000_000) == 4000 and ivf_lists(100) == 2


@pytest.mark.parametrize(
    ("n_items", "dim", "shape"),
    [(1_000_000, 128, (32, 8)), (10_000, 384, (96, 8)), (2000, 100, (25, 5)), (50, 16, (4, 4))],
)
def test_pq_shape(n_items, dim, shape):
    assert pq_shape(n_items, dim) == shape


def test_auto_builds_each_tier():
    vectors = clustered(600)
    flat = VectorIndex.build(vectors, IndexConfig(exact_max_items=600))
    hnsw = VectorIndex.build(vectors, IndexConfig(exact_max_items=100, hnsw_max_items=600))
    ivfpq = VectorIndex.build(vectors, IndexConfig(exact_max_items=100, hnsw_max_items=599))
    assert flat.index_type == "IndexFlatIP" and flat.is_exact
    assert hnsw.factory == "HNSW32" and hnsw.index_type == "IndexHNSWFlat"
    assert ivfpq.factory.endswith(",RFlat")
    assert ivfpq.index_type == "IndexRefineFlat(IndexIVFPQ)" and not ivfpq.is_exact


@pytest.fixture(scope="module")
def reranked():
    """IVF-PQ with every list probed and 20 * k candidates re-scored: on this clustered set the
    exact top-10 is always among the PQ's top 200, so re-rank must give the exact answer."""
    vectors = clustered(2000)
    tracker = NullTracker()
    config = IndexConfig(factory="ivfpq", nprobe=10_000, rerank_factor=20, recall_sample=200)
    return vectors, VectorIndex.build(vectors, config, tracker), tracker


def test_rerank_returns_the_exact_top_k(reranked):
    vectors, index, _ = reranked
    queries = vectors[:50] + 0.1
    idx, val = index.search(queries, 10)
    ref_idx, ref_val = brute_force(vectors, queries, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, atol=1e-5)
    # the control: the PQ codes alone (four 5-bit codes per item here) get most rows wrong
    pq_idx, _ = index.search(queries, 10, rerank=False)
    assert (pq_idx != ref_idx).any(axis=1).mean() > 0.5


def test_build_recall_is_measured_after_rerank(reranked):
    vectors, index, tracker = reranked
    logged = tracker.metrics["index.recall_at_10"][0][1]
    assert logged == index.build_recall == 1.0
    before = index.measure_recall(vectors, k=10, n_queries=200, rerank=False)
    assert before < 0.9, before  # what the re-rank adds is measured, not assumed


def test_rerank_factor_and_nprobe_come_from_config_and_survive_save(tmp_path):
    config = IndexConfig(factory="ivfpq", rerank_factor=7, nprobe=5)
    index = VectorIndex.build(clustered(1000), config)
    index.save(tmp_path / "pq.faiss")
    loaded = VectorIndex.load(tmp_path / "pq.faiss")
    assert loaded.config.rerank_factor == 7 and loaded.config.nprobe == 5
    again = VectorIndex.load(tmp_path / "pq.faiss", IndexConfig(rerank_factor=3, nprobe=2))
    assert again.config.rerank_factor == 3 and again.config.nprobe == 2


BLOCK_FAISS = textwrap.dedent(
    """
    import sys

    class Hiding:  # every finder fails to find faiss: as on `pip install recsys-engine`
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "faiss":
                return None
            return self.finder.find_spec(name, path, target)

    sys.meta_path[:] = [Hiding(f) for f in sys.meta_path]
    import recsys.config  # the rest of the package does not need faiss
    try:
        import recsys.index
    except ImportError as exc:
        print(type(exc).__name__, exc.name, exc, sep="|")
    """
)


def test_missing_faiss_names_the_extra():
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_FAISS], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "ModuleNotFoundError|faiss|faiss is not installed: "
        "install recsys-engine[cpu] or recsys-engine[gpu]"
    )
