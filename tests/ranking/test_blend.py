"""BlendedRanker: segments, normalisation, candidates, learning, per-source scores, saving."""

import numpy as np
import pytest
from blend_world import contract_content, make_world
from contract import RecommenderContract, contract_matrix

from recsys import tracking
from recsys.config import BlendConfig, CollabConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import build_candidates, normalize
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights, segment_labels, segment_of
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.ranking.weights import learn_weights, simplex_grid

TWO = BlendConfig(sources=["text", "collab"], candidates_per_source=30)


class TestBlendContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        matrix = contract_matrix()
        sources = {
            "text": contract_content(),
            "collab": CollabRecommender.fit(
                matrix, CollabConfig(model="als", factors=8, threads=1)
            ),
            "popularity": PopularityRecommender.fit(matrix),
        }
        weights = SegmentWeights(
            [0, 5, 50],
            {"text": 0.3, "collab": 0.5, "popularity": 0.2},
            {"6-50": {"text": 0.5, "collab": 0.5}},
        )
        lengths = np.diff(matrix.indptr)  # (n_users,) history lengths for the segments
        return BlendedRanker(sources, weights, BlendConfig(candidates_per_source=6), lengths)


@pytest.fixture(scope="module")
def world():
    return make_world()


def _sources(world):
    return {
        "text": ContentRecommender(world.item_vectors, HistoryMeanEncoder()),
        "collab": ContentRecommender(world.noise_vectors, HistoryMeanEncoder()),  # pure noise
    }


def test_segments_follow_the_bounds():
    assert segment_labels([0, 5, 50]) == ["0", "1-5", "6-50", "51+"]
    segments = segment_of(np.array([0, 1, 5, 6, 50, 51, 400]), [0, 5, 50])
    assert segments.tolist() == [0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="strictly ascending"):
        segment_labels([5, 0])


def test_normalisation_by_hand():
    raw = np.array([[1.0, 2.0, 3.0, -np.inf], [4.0, 4.0, 4.0, 4.0]], dtype=np.float32)
    z = normalize(raw, raw, "zscore")
    np.testing.assert_allclose(z[0, :3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    assert z[0, 3] == 0.0 and (z[1] == 0.0).all()  # missing and constant: neutral
    np.testing.assert_allclose(normalize(raw, raw, "minmax")[0], [0.0, 0.5, 1.0, 0.5])
    np.testing.assert_allclose(normalize(raw, raw, "rank")[0], [1 / 6, 0.5, 5 / 6, 0.5])
    np.testing.assert_allclose(normalize(raw, raw, "rank")[1], [0.5] * 4)  # four-way tie
    # statistics come from the reference (the source's own top-N), not from the values
    x, ref = np.array([[0.0, 10.0]]), np.array([[2.0, 4.0, -np.inf]])
    np.testing.assert_allclose(normalize(x, ref, "zscore"), [[-3.0, 7.0]])
    np.testing.assert_allclose(normalize(x, ref, "minmax"), [[-1.0, 4.0]])
    np.testing.assert_allclose(normalize(x, ref, "rank"), [[0.0, 1.0]])


def test_candidates_are_the_union_of_top_n_after_exclusions():
    a = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    b = a[:, ::-1].copy()
    cands = build_candidates([a, b], 2, [np.array([0])], None, "zscore")
    assert cands.items.tolist() == [[1, 2, 4, 5]]  # a: 1, 2 (0 excluded); b: 5, 4
    allowed = np.array([True, True, False, True, True, False])
    cands = build_candidates([a, b], 1, None, allowed, "zscore")
    assert cands.items.tolist() == [[0, 4]]


def test_score_is_minus_inf_outside_the_candidates(world):
    ranker = BlendedRanker(_sources(world), SegmentWeights.uniform(TWO.sources, [0, 5, 50]), TWO)
    scores = ranker.score(world.queries()[:5])
    finite = np.isfinite(scores).sum(axis=1)
    assert (finite >= TWO.candidates_per_source).all()
    assert (finite <= 2 * TWO.candidates_per_source).all()


def test_single_source_weight_reproduces_that_source_ranking(world):
    weights = SegmentWeights.fixed({"text": 1.0, "collab": 0.0}, [0, 5, 50])
    sources = _sources(world)
    queries, exclude = world.queries()[:20], world.histories[:20]
    blended, _ = BlendedRanker(sources, weights, TWO).recommend(queries, 10, exclude)
    alone, _ = sources["text"].recommend(queries, 10, exclude)
    np.testing.assert_array_equal(blended, alone)


def test_a_source_that_cannot_score_gets_weight_zero(world):
    # the collab slot only knows users 0..9; the others are unknown to it and it cannot fold in
    collab = ContentRecommender(world.noise_vectors, lambda qs, v: np.zeros((len(qs), v.shape[1])))
    collab.known_user_vectors = world.noise_vectors[:10]
    sources = {"text": _sources(world)["text"], "collab": collab}
    weights = SegmentWeights.fixed({"text": 0.25, "collab": 0.75}, [0, 5, 50])
    ranker = BlendedRanker(sources, weights, TWO)
    queries = [Query(user_idx=3, history=world.histories[3]), Query(history=world.histories[3])]
    result = ranker.recommend_detailed(queries, 5)
    np.testing.assert_allclose(result.weights["text"], [0.25, 1.0])
    np.testing.assert_allclose(result.weights["collab"], [0.75, 0.0])
    assert np.isnan(result.source_scores["collab"][1]).all()
    text_alone, _ = sources["text"].recommend(queries[1:], 5)
    np.testing.assert_array_equal(result.item_idx[1], text_alone[0])


def test_per_source_scores_are_the_raw_source_scores(world):
    sources = _sources(world)
    ranker = BlendedRanker(sources, SegmentWeights.uniform(TWO.sources, [0, 5, 50]), TWO)
    queries = world.queries()[:6]
    result = ranker.recommend_detailed(queries, 8, exclude=world.histories[:6])
    assert result.path == ["history"] * 6
    for name, source in sources.items():
        raw = source.score(queries)  # (6, n_items)
        expected = np.take_along_axis(raw, result.item_idx, axis=1)
        np.testing.assert_allclose(result.source_scores[name], expected, rtol=1e-5)
    rows = result.rows()
    assert set(rows[0][0]) == {"item_idx", "score", "sources"}
    assert set(rows[0][0]["sources"]) == {"text", "collab"}


def test_simplex_grid():
    grid = simplex_grid(3, 6)
    assert grid.shape == (21, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)


def test_learning_recovers_the_informative_source_and_beats_the_noise(world):
    sources, queries = _sources(world), world.queries()
    config = TWO.model_copy(update={"weight_grid": 5})
    weights = learn_weights(sources, queries, world.held_out, world.histories, config, 10, 20)
    assert weights.default["text"] > weights.default["collab"]
    lengths = np.array([h.size for h in world.histories])
    assert weights.stats["users"]["1-5"] == ((lengths >= 1) & (lengths <= 5)).sum()
    assert weights.stats["users"]["6-50"] == ((lengths >= 6) & (lengths <= 50)).sum()
    assert weights.stats["chosen"]["0"] == weights.stats["chosen"]["51+"] == "global (few users)"
    for segment in weights.per_segment.values():
        assert segment["text"] > segment["collab"]
    again = learn_weights(sources, queries, world.held_out, world.histories, config, 10, 20)
    assert again == weights  # deterministic
    ndcg = {}
    for name, fixed in {
        "learned": weights,
        "noise": SegmentWeights.fixed({"collab": 1}, [0, 5, 50]),
    }.items():
        ranked, _ = BlendedRanker(sources, fixed, config).recommend(queries, 10, world.histories)
        ndcg[name] = per_user_metrics(ranked, world.held_out, 10, ("ndcg",))["ndcg"].mean()
    assert ndcg["learned"] > 2 * ndcg["noise"]
    assert weights.stats["ndcg"]["all"] == pytest.approx(ndcg["learned"])


class NextTopicEncoder:
    """A real user encoder of the content call shape that bets on drift: the mean vector of the
    topic after the one most of the history is about."""

    def __init__(self, topic: np.ndarray):
        self.topic = topic

    def __call__(self, queries, item_vectors):
        n_topics = self.topic.max() + 1
        out = np.zeros((len(queries), item_vectors.shape[1]))
        for row, query in enumerate(queries):
            if query.history.size:
                home = np.bincount(self.topic[query.history], minlength=n_topics).argmax()
                out[row] = item_vectors[self.topic == (home + 1) % n_topics].mean(axis=0)
        return out


def test_each_segment_learns_the_source_that_serves_it():
    # short histories stay on topic (text is right); long ones drift (the "collab" slot is)
    world = make_world(drift_after=5)
    sources = {
        "text": ContentRecommender(world.item_vectors, HistoryMeanEncoder()),
        "collab": ContentRecommender(world.item_vectors, NextTopicEncoder(world.topic)),
    }
    config = TWO.model_copy(update={"weight_grid": 5})
    weights = learn_weights(
        sources, world.queries(), world.held_out, world.histories, config, 10, 20
    )
    assert weights.for_segment("1-5")["text"] > weights.for_segment("1-5")["collab"]
    assert weights.stats["chosen"]["6-50"] == "own"
    assert weights.per_segment["6-50"]["collab"] > weights.per_segment["6-50"]["text"]
    ranker = BlendedRanker(sources, weights, config)
    learned = ranker.recommend(world.queries(), 10, world.histories)[0]
    segment_blind = BlendedRanker(
        sources, SegmentWeights.fixed(weights.default, [0, 5, 50]), config
    )
    blind = segment_blind.recommend(world.queries(), 10, world.histories)[0]
    ndcg = [
        per_user_metrics(r, world.held_out, 10, ("ndcg",))["ndcg"].mean() for r in (learned, blind)
    ]
    assert ndcg[0] > ndcg[1]


def test_fixed_weights_bypass_learning(world):
    config = TWO.model_copy(update={"fixed_weights": {"text": 3.0, "collab": 1.0}})
    weights = learn_weights(_sources(world), [], [], None, config)
    assert weights.default == {"text": 0.75, "collab": 0.25} and weights.per_segment == {}
    bad = TWO.model_copy(update={"fixed_weights": {"popularity": 1.0}})
    with pytest.raises(ValueError, match="not in blend.sources"):
        learn_weights(_sources(world), [], [], None, bad)


def _example_weights() -> SegmentWeights:
    return SegmentWeights(
        [0, 5, 50],
        {"text": 0.6, "collab": 0.4},
        {"51+": {"text": 0.2, "collab": 0.8}},
        {"ndcg": {"all": 0.1, "51+": 0.3}},
    )


def test_segment_weights_json_round_trip_and_log(tmp_path):
    weights = _example_weights()
    weights.save(tmp_path / "weights.json")
    assert SegmentWeights.load(tmp_path / "weights.json") == weights
    assert weights.for_segment("1-5") == weights.default
    tracker = tracking.NullTracker()
    weights.log(tracker)
    assert tracker.params["blend.weight.51plus.collab"] == 0.8
    assert tracker.params["blend.weight.all.text"] == 0.6
    assert tracker.metrics["blend.valid_ndcg.51plus"] == [(None, 0.3)]
    with pytest.raises(ValueError, match="unknown segments"):
        SegmentWeights([0, 5], {"text": 1.0}, {"6-50": {"text": 1.0}})


@pytest.mark.slow
def test_segment_weights_logged_to_mlflow():
    import mlflow

    with tracking.start_run("blend-test", "weights") as run:
        _example_weights().log(run)
    logged = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri()).get_run(run.run_id).data
    assert logged.params["blend.weight.51plus.collab"] == "0.8"
    assert logged.metrics["blend.valid_ndcg.51plus"] == 0.3


def test_blend_save_load_round_trip(tmp_path, world):
    weights = SegmentWeights([0, 5, 50], {"text": 0.7, "collab": 0.3}, {"1-5": {"text": 1.0}})
    ranker = BlendedRanker(_sources(world), weights, TWO, np.arange(len(world.histories)))
    ranker.save(tmp_path / "blend")
    loaded = BlendedRanker.load(tmp_path / "blend")
    queries = world.queries()[:10]
    np.testing.assert_array_equal(loaded.score(queries), ranker.score(queries))
    assert loaded.weights == weights and loaded.config == TWO


def test_mismatched_sources_and_config_are_reported(world):
    with pytest.raises(ValueError, match="must name the same recommenders"):
        BlendedRanker(_sources(world), SegmentWeights.uniform(["text"], [0, 5, 50]), BlendConfig())
