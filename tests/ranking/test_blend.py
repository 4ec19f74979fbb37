"""BlendedRanker: segments, normalisation, candidates, per-source scores, saving (weight learning:
tests/training/test_blend_weights.py)."""

import numpy as np
import pytest
from blend_world import contract_content, make_world, text_and_noise
from contract import RecommenderContract, contract_matrix

from recsys import tracking
from recsys.config import BlendConfig, CollabConfig
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import build_candidates, normalize
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights, segment_labels, segment_of

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
        return BlendedRanker(
            sources, weights, BlendConfig(sources=list(sources), candidates_per_source=6), lengths
        )


@pytest.fixture(scope="module")
def world():
    return make_world()


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
    weights = SegmentWeights.uniform(TWO.sources, [0, 5, 50])
    ranker = BlendedRanker(text_and_noise(world), weights, TWO)
    scores = ranker.score(world.queries()[:5])
    finite = np.isfinite(scores).sum(axis=1)
    assert (finite >= TWO.candidates_per_source).all()
    assert (finite <= 2 * TWO.candidates_per_source).all()


def test_single_source_weight_reproduces_that_source_ranking(world):
    weights = SegmentWeights.fixed({"text": 1.0, "collab": 0.0}, [0, 5, 50])
    sources = text_and_noise(world)
    queries, exclude = world.queries()[:20], world.histories[:20]
    blended, _ = BlendedRanker(sources, weights, TWO).recommend(queries, 10, exclude)
    alone, _ = sources["text"].recommend(queries, 10, exclude)
    np.testing.assert_array_equal(blended, alone)


def test_a_source_that_cannot_score_gets_weight_zero(world):
    # the collab slot only knows users 0..9; the others are unknown to it and it cannot fold in
    collab = ContentRecommender(world.noise_vectors, lambda qs, v: np.zeros((len(qs), v.shape[1])))
    collab.known_user_vectors = world.noise_vectors[:10]
    sources = {"text": text_and_noise(world)["text"], "collab": collab}
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
    sources = text_and_noise(world)
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
    ranker = BlendedRanker(text_and_noise(world), weights, TWO, np.arange(len(world.histories)))
    ranker.save(tmp_path / "blend")
    loaded = BlendedRanker.load(tmp_path / "blend")
    queries = world.queries()[:10]
    np.testing.assert_array_equal(loaded.score(queries), ranker.score(queries))
    assert loaded.weights == weights and loaded.config == TWO


def test_mismatched_sources_and_config_are_reported(world):
    with pytest.raises(ValueError, match="must name the same recommenders"):
        weights = SegmentWeights.uniform(["text"], [0, 5, 50])
        BlendedRanker(text_and_noise(world), weights, BlendConfig())
