"""Cold-start chain and explanations: known / history / profile / nothing, new text-only items."""

import numpy as np
import pytest
import scipy.sparse as sp
from blend_world import make_world

from recsys.config import BlendConfig, CollabConfig
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker, query_path
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.explain import explain_with_history
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.vectors import normalize_rows

BOUNDS = [0, 5, 50]


class TopicProfileEncoder:
    """A real user encoder of the content call shape: the history mean, else the mean vector of
    the items of the topic a profile names ("... topic 3 ...")."""

    def __init__(self, topic: np.ndarray):
        self.topic = topic

    def __call__(self, queries, item_vectors):
        out = HistoryMeanEncoder()(queries, item_vectors)  # (n, dim)
        for row, query in enumerate(queries):
            words = (query.profile_text or "").split()
            if not out[row].any() and "topic" in words:
                wanted = int(words[words.index("topic") + 1])
                out[row] = item_vectors[: self.topic.size][self.topic == wanted].mean(axis=0)
        return normalize_rows(out)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def collab(world):
    rows = np.concatenate([np.full(h.size, u) for u, h in enumerate(world.histories)])
    matrix = sp.csr_matrix(
        (np.ones(rows.size), (rows, np.concatenate(world.histories))),
        shape=(len(world.histories), world.n_items),
    )
    config = CollabConfig(model="als", factors=8, iterations=10, threads=1)
    return CollabRecommender.fit(matrix, config), PopularityRecommender.fit(matrix)


@pytest.fixture
def ranker(world, collab):
    sources = {
        "text": ContentRecommender(world.item_vectors, TopicProfileEncoder(world.topic)),
        "collab": collab[0],
        "popularity": collab[1],
    }
    weights = SegmentWeights.fixed({"text": 0.6, "collab": 0.2, "popularity": 0.2}, BOUNDS)
    return BlendedRanker(
        sources, weights, BlendConfig(sources=list(sources), candidates_per_source=40)
    )


def test_paths_follow_what_the_query_carries():
    history, profile = np.array([1, 2]), "likes topic 3"
    assert query_path(Query(user_idx=4, history=history)) == "known"
    assert query_path(Query(history=history)) == "history"
    assert query_path(Query(profile_text=profile)) == "profile"
    assert query_path(Query(history=history, profile_text=profile)) == "history+profile"
    assert query_path(Query(profile_text="   ")) == "popularity"
    assert query_path(Query()) == "popularity"


def test_history_only_is_served_by_the_user_tower_on_topic(world, ranker):
    history = world.histories[0]  # user 0 is on topic 0
    result = ranker.recommend_detailed([Query(history=history)], 10, exclude=[history])
    assert result.path == ["history"]
    assert result.weights["text"][0] == pytest.approx(0.6)
    assert result.weights["collab"][0] == pytest.approx(0.2)  # folded in from the item ids
    assert (world.topic[result.item_idx[0]] == 0).mean() >= 0.8
    assert np.isfinite(result.source_scores["text"][0]).all()
    assert np.isfinite(result.source_scores["collab"][0]).all()


def test_known_user_gets_the_full_blend(world, ranker):
    history = world.histories[4]
    result = ranker.recommend_detailed([Query(user_idx=4, history=history)], 10, [history])
    assert result.path == ["known"]
    collab_alone = ranker.sources["collab"].score([Query(user_idx=4)])[0]
    np.testing.assert_allclose(
        result.source_scores["collab"][0], collab_alone[result.item_idx[0]], rtol=1e-5
    )  # the learned factors, not a fold-in
    assert all(result.weights[s][0] > 0 for s in ranker.names)


def test_profile_only_uses_the_text_side_only(world, ranker):
    result = ranker.recommend_detailed([Query(profile_text="new here, topic 5 fan")], 10)
    assert result.path == ["profile"] and result.segment == ["0"]
    assert result.weights["text"][0] == pytest.approx(0.75)  # 0.6 / (0.6 + 0.2): no collab
    assert result.weights["collab"][0] == 0 and np.isnan(result.source_scores["collab"]).all()
    assert (world.topic[result.item_idx[0]] == 5).mean() >= 0.8


def test_nothing_falls_back_to_popularity_within_the_filters(world, ranker):
    popularity = ranker.sources["popularity"]
    allowed = world.topic != 2
    exclude = [np.array([int(np.argmax(popularity.popularity))])]
    result = ranker.recommend_detailed([Query()], 8, exclude=exclude, allowed=allowed)
    expected, _ = popularity.recommend([Query()], 8, exclude=exclude, allowed=allowed)
    assert result.path == ["popularity"]
    np.testing.assert_array_equal(result.item_idx, expected)
    assert np.isnan(result.source_scores["text"]).all()
    assert result.weights["popularity"][0] == 1.0


def test_new_item_with_text_only_becomes_recommendable(world, ranker):
    history = world.histories[7]  # topic 7
    text = ranker.sources["text"]
    [new_item] = text.add_items(world.item_vectors[history].mean(axis=0, keepdims=True))
    assert ranker.n_items == world.n_items + 1  # popularity has never seen it
    result = ranker.recommend_detailed([Query(history=history)], 5, [history], explain=True)
    assert result.item_idx[0, 0] == new_item
    assert np.isnan(result.source_scores["popularity"][0, 0])  # no interactions: no count
    assert result.because[0, 0] in history
    excluded = ranker.recommend_detailed(
        [Query(history=history)], 5, [np.append(history, new_item)]
    )
    assert new_item not in excluded.item_idx[0]


def test_explanations_point_to_the_most_similar_history_item():
    vectors = np.array(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0], [0.1, 0.2, 0.9]]
    )
    recommended = np.array([[3, 4, -1], [3, 4, 2]])
    because, similarity = explain_with_history(
        vectors, [np.array([0, 1, 2]), np.array([], dtype=np.int64)], recommended
    )
    assert because.tolist() == [[0, 2, -1], [-1, -1, -1]]
    assert similarity[0, 0] == pytest.approx(0.9 / np.linalg.norm([0.9, 0.1]))
    assert np.isnan(similarity[0, 2]) and np.isnan(similarity[1]).all()


def test_explain_via_the_blend(world, ranker):
    history = world.histories[3]
    result = ranker.recommend_detailed([Query(history=history)], 5, [history], explain=True)
    vectors = ranker.sources["text"].item_vectors
    for item, reason in zip(result.item_idx[0], result.because[0], strict=True):
        assert reason == history[np.argmax(vectors[history] @ vectors[item])]
    row = result.rows()[0][0]
    assert row["because"] == int(result.because[0, 0]) and row["because_similarity"] > 0
