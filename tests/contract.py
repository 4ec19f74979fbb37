"""The contract every Recommender passes (implicit's recommender_base_test idea), as a mixin.

A recommender's test module subclasses RecommenderContract and provides `make_recommender`:

    class TestPopularityContract(RecommenderContract):
        def make_recommender(self, tmp_path):
            return PopularityRecommender.fit(contract_matrix())

`make_recommender(tmp_path)` must fit from scratch on every call (the determinism test calls it
twice) and may use tmp_path for any files it needs. Override `make_queries` when the default
queries (known users 0-3 and one history-only query over items 0-2) do not suit the recommender;
every default query must be scorable. The catalog needs at least 12 items that every query can
score, so that exclusions and masks still leave k = 5 results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ranking.base import Query, Recommender


def contract_matrix(n_users: int = 30, n_items: int = 24, seed: int = 0) -> sp.csr_matrix:
    """(n_users, n_items) binary interactions with structure (three user groups, each preferring a
    third of the items) plus noise; every user has >= 3 items and every item >= 1 user."""
    rng = np.random.default_rng(seed)
    group_of_user = np.arange(n_users) % 3
    group_of_item = np.arange(n_items) % 3
    prob = np.where(group_of_user[:, None] == group_of_item[None, :], 0.6, 0.08)
    dense = rng.random((n_users, n_items)) < prob  # (n_users, n_items)
    dense[np.arange(n_users), np.arange(n_users) % n_items] = True
    dense[np.arange(n_items) % n_users, np.arange(n_items)] = True
    return sp.csr_matrix(dense.astype(np.float32))


class RecommenderContract:
    """Shared tests; subclasses provide make_recommender (and optionally make_queries)."""

    k = 5

    def make_recommender(self, tmp_path: Path) -> Recommender:
        raise NotImplementedError("subclasses return a freshly fitted recommender")

    def load_saved(self, fitted: Recommender, directory: Path) -> Recommender:
        """The recommender saved in `directory` read back (a source that reads another's arrays
        overrides this to bind it again)."""
        return type(fitted).load(directory)

    def make_queries(self, recommender: Recommender) -> list[Query]:
        history = np.array([0, 1, 2], dtype=np.int64)
        known = [Query(user_idx=u, history=history) for u in range(4)]
        return known + [Query(history=history)]

    @pytest.fixture(scope="class")
    def fitted(self, tmp_path_factory) -> Recommender:
        return self.make_recommender(tmp_path_factory.mktemp("contract"))

    # --- helpers -------------------------------------------------------------------------------

    def _recommend(self, rec: Recommender, k: int | None = None, **kwargs):
        queries = self.make_queries(rec)
        idx, val = rec.recommend(queries, self.k if k is None else k, **kwargs)
        return queries, idx, val

    @staticmethod
    def _check_padding(idx: np.ndarray, val: np.ndarray) -> None:
        """-1 exactly where -inf; padding only at a row's end; no repeats; scores descending."""
        assert ((idx == -1) == np.isneginf(val)).all()
        for row_idx, row_val in zip(idx, val, strict=True):
            valid = row_idx >= 0
            n_valid = int(valid.sum())
            assert valid[:n_valid].all(), f"padding before a result: {row_idx}"
            assert len(set(row_idx[:n_valid].tolist())) == n_valid, f"repeated item: {row_idx}"
            assert (np.diff(row_val[:n_valid]) <= 0).all(), f"scores not descending: {row_val}"

    # --- the contract --------------------------------------------------------------------------

    def test_score_shape(self, fitted):
        queries = self.make_queries(fitted)
        scores = fitted.score(queries)
        assert scores.shape == (len(queries), fitted.n_items)
        assert scores.dtype == np.float32

    def test_recommend_shapes_order_and_full_rows(self, fitted):
        queries, idx, val = self._recommend(fitted)
        assert idx.shape == val.shape == (len(queries), self.k)
        assert idx.dtype == np.int64 and val.dtype == np.float32
        self._check_padding(idx, val)
        assert (idx >= 0).all(), "every default query should be scorable with k results"
        assert ((idx >= 0) & (idx < fitted.n_items)).all()

    def test_pads_when_catalog_smaller_than_k(self, fitted):
        k = fitted.n_items + 3
        queries, idx, val = self._recommend(fitted, k=k)
        assert idx.shape == (len(queries), k)
        self._check_padding(idx, val)
        assert (idx[:, fitted.n_items :] == -1).all()
        assert np.isneginf(val[:, fitted.n_items :]).all()

    def test_exclusions_honoured_and_k_kept(self, fitted):
        queries, best, _ = self._recommend(fitted)
        exclude = [np.concatenate([row[:2], [-1, fitted.n_items + 7]]) for row in best]
        _, idx, val = self._recommend(fitted, exclude=exclude)
        self._check_padding(idx, val)
        for row, banned in zip(idx, exclude, strict=True):
            assert not set(row.tolist()) & set(banned.tolist())
        assert (idx >= 0).all(), "exclusions must not cost results when the catalog has enough"
        assert (idx[:, : self.k - 2] == best[:, 2:]).all(), "the rest keeps its order"

    def test_exclusions_leave_fewer_than_k(self, fitted):
        queries = self.make_queries(fitted)
        keep = np.array([1, 3])
        everything_else = np.setdiff1d(np.arange(fitted.n_items), keep)
        exclude = [everything_else] * len(queries)
        idx, val = fitted.recommend(queries, self.k, exclude=exclude)
        self._check_padding(idx, val)
        assert (np.sort(idx[:, :2], axis=1) == keep).all()
        assert (idx[:, 2:] == -1).all()

    def test_allowed_mask_honoured(self, fitted):
        allowed = np.arange(fitted.n_items) % 2 == 0
        _, idx, val = self._recommend(fitted, allowed=allowed)
        self._check_padding(idx, val)
        assert (idx >= 0).all(), "a mask leaving enough items must not cost results"
        assert allowed[idx].all()

    def test_deterministic(self, fitted, tmp_path):
        again = self.make_recommender(tmp_path)
        _, idx1, val1 = self._recommend(fitted)
        _, idx2, val2 = self._recommend(again)
        np.testing.assert_array_equal(idx1, idx2)
        np.testing.assert_allclose(val1, val2, rtol=1e-6)

    def test_save_load_round_trip(self, fitted, tmp_path):
        fitted.save(tmp_path / "saved")
        loaded = self.load_saved(fitted, tmp_path / "saved")
        assert loaded.n_items == fitted.n_items
        _, idx1, val1 = self._recommend(fitted)
        _, idx2, val2 = self._recommend(loaded)
        np.testing.assert_array_equal(idx1, idx2)
        np.testing.assert_array_equal(val1, val2)
        for item in (0, fitted.n_items - 1):
            before, after = fitted.similar_items(item, self.k), loaded.similar_items(item, self.k)
            np.testing.assert_array_equal(before[0], after[0])
            np.testing.assert_array_equal(before[1], after[1])

    def test_similar_items_exclude_the_item(self, fitted):
        for item in range(0, fitted.n_items, max(1, fitted.n_items // 6)):
            idx, val = fitted.similar_items(item, self.k)
            assert idx.shape == val.shape == (self.k,)
            assert item not in idx.tolist()
            self._check_padding(idx[None, :], val[None, :])
            assert (idx >= 0).all()
        idx, _ = fitted.similar_items(0, fitted.n_items + 2)
        assert 0 not in idx.tolist() and (idx[fitted.n_items - 1 :] == -1).all()

    def test_similar_items_rejects_unknown_item(self, fitted):
        with pytest.raises(IndexError, match="out of range"):
            fitted.similar_items(fitted.n_items, self.k)
