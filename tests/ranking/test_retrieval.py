"""Retrieval path of the blend (catalogs above index.exact_max_items): the same top-k as the dense
path on a real published bundle, no source scoring beyond its batch, and the union helpers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support import build_test_bundle

from recsys import bundle
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import build_candidates
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.neighbors import NeighborsRecommender
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.retrieval import (
    candidates_from_retrieved,
    dense_retrieve,
    first_valid,
    union_rows,
)
from recsys.ranking.transitions import TransitionsRecommender

K = 10


@pytest.fixture(scope="module")
def ranker(tmp_path_factory) -> BlendedRanker:
    """The ranker of a real nightly's bundle (text with a Flat index and item_bias, LightFM,
    popularity, neighbors, transitions; 400 items, candidates_per_source 50)."""
    workdir = tmp_path_factory.mktemp("retrieval") / "var"
    build_test_bundle(workdir)
    return BlendedRanker.load(bundle.current_bundle(workdir) / "ranker")


def _queries(n_items: int) -> list[Query]:
    """Known users (stored-history vectors and fresh histories), history only, profile only,
    history + profile, and nothing at all (popularity)."""
    rng = np.random.default_rng(7)
    history = [rng.choice(n_items, size, replace=False) for size in (1, 3, 8, 20) * 3]
    known = [Query(u, h) for u, h in zip(range(12), history, strict=True)]
    cold = [Query(-1, h) for h in history]
    profile = [Query(-1, profile_text=t) for t in ("space adventure", "a quiet love story")]
    both = [Query(-1, history[2], "crime thriller"), Query(-1, history[5], "family comedy")]
    return known + [Query(u) for u in range(12, 20)] + cold + profile + both + [Query()]


def _both_paths(ranker: BlendedRanker, queries, **kwargs):
    text = ranker.sources["text"]
    saved = text.exact_max_items
    try:
        text.exact_max_items = ranker.n_items  # at the limit: dense, as before
        assert not ranker.retrieves
        dense = ranker.recommend_detailed(queries, K, **kwargs)
        text.exact_max_items = 10  # the catalog passes it: retrieval
        assert ranker.retrieves
        retrieved = ranker.recommend_detailed(queries, K, **kwargs)
    finally:
        text.exact_max_items = saved
    return dense, retrieved


@pytest.mark.parametrize("filtering", ["none", "exclude", "exclude+allowed", "small allowed"])
def test_retrieval_ranks_as_the_dense_path(ranker, filtering):
    assert "Flat" in ranker.sources["text"].index.factory  # exact search: results must agree
    queries = _queries(ranker.n_items)
    kwargs = {}
    if filtering != "none":
        kwargs["exclude"] = [np.concatenate([q.history, [0, 1, 2]]) for q in queries]
    rng = np.random.default_rng(3)
    if filtering == "exclude+allowed":
        kwargs["allowed"] = rng.random(ranker.n_items) < 0.4
    if filtering == "small allowed":  # fewer allowed items than k: every source's few
        allowed = np.zeros(ranker.n_items, dtype=bool)
        allowed[rng.choice(ranker.n_items, 6, replace=False)] = True
        kwargs["allowed"] = allowed
    dense, retrieved = _both_paths(ranker, queries, **kwargs)
    np.testing.assert_array_equal(retrieved.item_idx, dense.item_idx)
    np.testing.assert_allclose(retrieved.score, dense.score, rtol=1e-5, atol=1e-5)
    for name in ranker.names:
        np.testing.assert_allclose(
            retrieved.source_scores[name], dense.source_scores[name], rtol=1e-5, atol=1e-5
        )
    assert retrieved.path == dense.path
    assert (dense.item_idx >= 0).sum() > 0.9 * dense.item_idx.size or filtering == "small allowed"
    if "exclude" in kwargs:
        for row, excluded in zip(retrieved.item_idx, kwargs["exclude"], strict=True):
            assert not np.isin(row, excluded).any()
    if "allowed" in kwargs:
        assert kwargs["allowed"][retrieved.item_idx[retrieved.item_idx >= 0]].all()


class _Counting:
    """Records the batch each retrieve() gets and the rows of each dense score() matrix (mixed
    into the real source classes; `batches` and `scored` are set per instance)."""

    batches: list[int]
    scored: list[int]

    def retrieve(self, queries, *args, **kwargs):
        self.batches.append(len(queries))
        return super().retrieve(queries, *args, **kwargs)

    def score(self, queries):
        out = super().score(queries)
        self.scored.append(out.shape[0])
        return out


class CountingContent(_Counting, ContentRecommender):
    pass


class CountingCollab(_Counting, CollabRecommender):
    pass


class CountingPopularity(_Counting, PopularityRecommender):
    pass


class CountingNeighbors(_Counting, NeighborsRecommender):
    pass


class CountingTransitions(_Counting, TransitionsRecommender):
    pass


def _recording_factors(model, scored: list[int]):
    """A copy of a FactorModel whose score_vectors (every (n, n_items) product of collab, and
    score_users' of known users) also records its rows in `scored`."""
    model = copy.copy(model)
    real = model.score_vectors

    def score_vectors(vectors, biases=None):
        out = real(vectors, biases)
        scored.append(out.shape[0])
        return out

    model.score_vectors = score_vectors
    return model


def _counting_sources(ranker: BlendedRanker) -> dict:
    names = ("text", "collab", "popularity", "neighbors", "transitions")
    text, collab, pop, nbr, seq = (ranker.sources[name] for name in names)
    collab_scored: list[int] = []
    sources = {
        "text": CountingContent(
            text.item_vectors,
            text.user_encoder,
            text.index,
            text.known_user_vectors,
            10,  # exact_max_items: the 400-item catalog takes the retrieval path
            text.known_user_keys,
            text.item_bias,
            normalized=True,
        ),
        "collab": CountingCollab(_recording_factors(collab.model, collab_scored)),
        "popularity": CountingPopularity(pop.popularity, pop.item_users),
        "neighbors": CountingNeighbors(nbr.weights, nbr.trained, nbr.config),
        "transitions": CountingTransitions(seq.weights, seq.trained, seq.config),
    }
    for source in sources.values():
        source.batches, source.scored = [], []
    sources["collab"].scored = collab_scored
    return sources


def test_retrieval_scores_no_source_beyond_its_batch(ranker):
    """The retrieval path: text searches its index and popularity reads its order (no dense
    scores at all); collab and the item-graph sources score densely, but only the batch they
    were given, never a (n_users, n_items) or other blend-wide matrix."""
    sources = _counting_sources(ranker)
    counting = BlendedRanker(sources, ranker.weights, ranker.config, ranker.user_history_len)
    queries = _queries(ranker.n_items)
    exclude = [q.history for q in queries]
    assert counting.retrieves
    counting.recommend_detailed(queries, K, exclude, np.arange(ranker.n_items) % 3 > 0)
    for name, source in sources.items():
        assert source.batches, name
        assert max(source.scored, default=0) <= max(source.batches), (name, source.scored)
    assert sources["text"].scored == [] and sources["popularity"].scored == []
    dense = ("collab", "neighbors", "transitions")
    assert all(sources[name].scored for name in dense)  # the bound was checked
    sources["text"].exact_max_items = ranker.n_items  # the records do see the dense path
    for source in sources.values():
        source.scored.clear()
    counting.recommend_detailed(queries, K, exclude)
    assert all(source.scored for source in sources.values())


def test_retrieval_switch(ranker, monkeypatch):
    saved = ranker.sources["text"].exact_max_items
    ranker.sources["text"].exact_max_items = 10
    try:
        assert ranker.retrieves
        monkeypatch.setenv("RECSYS_RETRIEVAL", "0")
        assert not ranker.retrieves
        monkeypatch.setenv("RECSYS_RETRIEVAL", "maybe")
        with pytest.raises(ValueError, match="RECSYS_RETRIEVAL: expected 1/0"):
            _ = ranker.retrieves
    finally:
        ranker.sources["text"].exact_max_items = saved


def test_union_and_first_valid():
    parts = [np.array([[5, 2, -1], [7, 7, 1]]), np.array([[2, 9, 0], [-1, -1, -1]])]
    np.testing.assert_array_equal(union_rows(parts), [[0, 2, 5, 9], [1, 7, -1, -1]])
    ids = np.array([[-1, 4, -1, 3, 8], [-1, -1, -1, -1, 6]])
    np.testing.assert_array_equal(first_valid(ids, 2), [[4, 3], [6, -1]])


@pytest.mark.parametrize("method", ["zscore", "minmax", "rank"])
def test_dense_retrieve_union_equals_build_candidates(method):
    """Sources without their own retrieval (dense_retrieve) give build_candidates' candidates."""
    rng = np.random.default_rng(1)
    n, n_items, per_source = 5, 300, 20
    matrices = [rng.normal(size=(n, n_items)).astype(np.float32) for _ in range(3)]
    matrices[1][2] = -np.inf  # a source that cannot score one query
    matrices[2][:, 250:] = -np.inf  # nor items it does not know
    exclude = [rng.choice(n_items, 30, replace=False) for _ in range(n)]
    for allowed in (None, rng.random(n_items) < 0.5):
        want = build_candidates(matrices, per_source, exclude, allowed, method)
        rows = np.arange(n)
        parts = [(rows, dense_retrieve(m, per_source, exclude, allowed)) for m in matrices]
        got = candidates_from_retrieved(parts, n, per_source, method)
        np.testing.assert_array_equal(got.items, want.items)
        np.testing.assert_array_equal(got.raw, want.raw)
        np.testing.assert_allclose(got.normalized, want.normalized, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.available, want.available)
