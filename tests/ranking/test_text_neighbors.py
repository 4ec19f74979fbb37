"""TextNeighborsRecommender: the shared contract, the best decayed cosine by hand, histories
without text, retrieval through the text source's FAISS index, the blend binding it to its text
source in a published bundle, and the config's rule that it needs text."""

import json

import numpy as np
import pytest
from blend_world import contract_content
from contract import RecommenderContract
from support import build_test_bundle, dense_and_retrieved

from recsys import bundle
from recsys.config import BlendConfig, ConfigError, TextNeighborsConfig, load_config
from recsys.index.faiss_index import VectorIndex
from recsys.ranking.base import Query
from recsys.ranking.content import ContentRecommender
from recsys.ranking.model import RecommenderModel
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.text_neighbors import TextNeighborsRecommender
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.vectors import normalize_rows


def bound(text: ContentRecommender, **config) -> TextNeighborsRecommender:
    rec = TextNeighborsRecommender(TextNeighborsConfig(**config))
    rec.bind({"text": text})
    return rec


class TestTextNeighborsContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return bound(contract_content())

    def load_saved(self, fitted, directory):
        loaded = TextNeighborsRecommender.load(directory)
        loaded.bind({"text": fitted.text})
        return loaded


def _vectors(n: int = 40, dim: int = 6, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, dim))).astype(np.float32)


def test_score_is_the_best_decayed_cosine_to_the_newest_distinct_items_with_text():
    vectors = _vectors()
    vectors[7] = 0.0  # an item without text
    rec = bound(ContentRecommender(vectors, HistoryMeanEncoder()), recency=0.5, history_len=3)
    # newest first: 4 (age 0), 1 (age 1), 3 (age 2), 7 (no text), 1 again, 2 (age 5: past the 3)
    history = np.array([2, 1, 7, 3, 1, 4])
    scores = rec.score([Query(-1, history), Query(-1, np.array([7])), Query(5), Query(-1)])
    cosines = vectors @ vectors[[4, 1, 3]].T  # (n_items, 3)
    expected = (cosines * np.array([1.0, 0.5, 0.25])).max(axis=1)
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)
    assert np.isfinite(scores[0]).all()  # every item with a vector, interactions or not
    assert np.isneginf(scores[1:]).all()  # nothing with text to compare with


@pytest.mark.parametrize("filtered", [False, True])
def test_retrieval_through_the_index_finds_the_dense_top_n(filtered):
    """Above the text source's exact_max_items each history item's top-n comes from the index;
    with an exact index their union holds the whole dense top-n (an item outside h's top-n has
    n items beating it through h alone), so ids, reference and scores agree."""
    vectors = _vectors(n=300, dim=8, seed=3)
    index = VectorIndex.build(vectors)
    dense = bound(ContentRecommender(vectors, HistoryMeanEncoder()), recency=0.8, history_len=5)
    text = ContentRecommender(vectors, HistoryMeanEncoder(), index, exact_max_items=10)
    via_index = bound(text, recency=0.8, history_len=5)
    rng = np.random.default_rng(4)
    queries = [Query(-1, rng.choice(300, size, replace=False)) for size in (1, 3, 12)]
    queries.append(Query(-1))
    exclude = [np.concatenate([q.history, [0, 1]]) for q in queries] if filtered else None
    allowed = (np.arange(300) % 3 != 0) if filtered else None
    want = dense.retrieve(queries, 25, exclude, allowed)
    got = via_index.retrieve(queries, 25, exclude, allowed)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.reference, want.reference, rtol=1e-5)
    items = np.array([[5, 17, -1, 299]] * len(queries))
    np.testing.assert_allclose(got.score_items(items), want.score_items(items), rtol=1e-5)
    assert (got.ids[-1] == -1).all() and (got.ids[:-1] >= 0).all()


def test_unbound_it_says_what_it_needs():
    rec = TextNeighborsRecommender(TextNeighborsConfig())
    with pytest.raises(RuntimeError, match="not bound to a text source"):
        rec.score([Query(-1, np.array([1]))])
    with pytest.raises(ValueError, match="expected a 'text' source"):
        rec.bind({"collab": contract_content()})


def test_config_refuses_it_without_the_text_source():
    with pytest.raises(ValueError, match=r"text_neighbors reads from \['text'\]"):
        BlendConfig(sources=["collab", "text_neighbors"])
    with pytest.raises(ConfigError, match="blend: .*text_neighbors reads from"):
        load_config(None, {"blend": {"sources": ["popularity", "text_neighbors"]}}, environ={})


@pytest.mark.slow
def test_blended_and_published_it_reads_the_bundles_text_source(tmp_path):
    """The nightly blends it (weights learned), the bundle stores only its config, the loaded
    ranker binds it to its own text source, and the retrieval path ranks as the dense path."""
    sources = ["text", "collab", "popularity", "neighbors", "text_neighbors"]
    build_test_bundle(tmp_path / "var", blend={"sources": sources})
    bundle_dir = bundle.current_bundle(tmp_path / "var")
    ranker_dir = bundle_dir / "ranker" / "text_neighbors"
    assert sorted(p.name for p in ranker_dir.iterdir()) == ["text_neighbors.json"]
    weights = json.loads((bundle_dir / "ranker" / "weights.json").read_text())["default"]
    assert set(weights) == set(sources)
    ranker = RecommenderModel.load(bundle_dir).ranker
    assert ranker.sources["text_neighbors"].text is ranker.sources["text"]
    fixed = {"text": 0.3, "collab": 0.2, "popularity": 0.1, "neighbors": 0.1, "text_neighbors": 0.3}
    ranker.weights = SegmentWeights.fixed(fixed, ranker.config.segment_bounds)  # all of them used
    dense, retrieved = dense_and_retrieved(ranker)
    assert np.isfinite(dense.source_scores["text_neighbors"]).all()
    np.testing.assert_array_equal(retrieved.item_idx, dense.item_idx)
    np.testing.assert_allclose(
        retrieved.source_scores["text_neighbors"], dense.source_scores["text_neighbors"], rtol=1e-5
    )
