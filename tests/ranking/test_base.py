"""The shared top-k: ordering, tie-breaking, exclusions, allow-mask, padding."""

import numpy as np

from recsys.ranking.base import apply_exclusions, top_k


def test_top_k_orders_breaks_ties_by_index_and_pads():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]], dtype=np.float32)
    idx, val = top_k(scores, 7)
    assert idx.tolist() == [[1, 2, 4, 0, -1, -1, -1]]
    assert val[0, :4].tolist() == [3.0, 3.0, 2.0, 1.0]
    assert np.isneginf(val[0, 4:]).all()


def test_exclusions_and_allowed_mask():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 50)).astype(np.float32)
    allowed = np.zeros(50, dtype=bool)
    allowed[10:40] = True
    exclude = [np.array([10, 11, 99, -1]), np.array([], dtype=np.int64), np.arange(10, 38)]
    apply_exclusions(scores, exclude, allowed)
    idx, _ = top_k(scores, 5)
    assert set(idx[0]) <= set(range(12, 40))
    assert set(idx[1]) <= set(range(10, 40))
    assert idx[2].tolist()[:2] in ([38, 39], [39, 38]) and idx[2, 2:].tolist() == [-1, -1, -1]


def test_top_k_matches_full_sort():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(20, 300)).astype(np.float32)
    idx, val = top_k(scores, 10)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (idx == expected).all()
    assert np.allclose(val, np.take_along_axis(scores, expected, axis=1))


def test_top_k_ties_at_the_boundary_go_to_the_lowest_index():
    scores = np.zeros((1, 1000), dtype=np.float32)
    scores[0, 500] = 1.0
    idx, _ = top_k(scores, 4)
    assert idx.tolist() == [[500, 0, 1, 2]]


def test_top_k_large_catalog_path_matches_stable_sort():
    # catalogs of >= 4 * k blocks of 64 go through the block-maximum pre-selection
    rng = np.random.default_rng(2)
    for scores in (
        rng.normal(size=(30, 5000)),
        rng.integers(0, 4, size=(30, 5000)),  # ties everywhere, also across blocks
        np.where(rng.random((30, 5000)) < 0.97, -np.inf, rng.normal(size=(30, 5000))),
    ):
        scores = scores.astype(np.float32)
        idx, val = top_k(scores, 10)
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        exp_val = np.take_along_axis(scores, expected, axis=1)
        assert (idx == np.where(np.isfinite(exp_val), expected, -1)).all()
        assert np.array_equal(val, exp_val)
