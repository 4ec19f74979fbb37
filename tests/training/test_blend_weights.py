"""Learning the blend weights: the simplex grid, recovering the informative source, per-segment
weights where a segment gains clearly, fixed weights."""

import numpy as np
import pytest
from blend_world import make_world, text_and_noise

from recsys.config import BlendConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import blend_scores
from recsys.ranking.content import ContentRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.training.blend_weights import learn_weights, simplex_grid

TWO = BlendConfig(sources=["text", "collab"], candidates_per_source=30)


@pytest.fixture(scope="module")
def world():
    return make_world()


def test_simplex_grid():
    grid = simplex_grid(3, 6)
    assert grid.shape == (21, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)


def test_learning_recovers_the_informative_source_and_beats_the_noise(world):
    sources, queries = text_and_noise(world), world.queries()
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
    weights = learn_weights(text_and_noise(world), [], [], None, config)
    assert weights.default == {"text": 0.75, "collab": 0.25} and weights.per_segment == {}
    bad = TWO.model_copy(update={"fixed_weights": {"popularity": 1.0}})
    with pytest.raises(ValueError, match="not in blend.sources"):
        learn_weights(text_and_noise(world), [], [], None, bad)


def test_grid_ndcg_equals_the_metric_on_each_grid_points_top_k(world):
    """The rank-based NDCG of the weight search is per_user_metrics on top_k's list for every
    grid point — ties included (rank normalisation ties many scores; one query holds two
    relevant items, one of them a history item the exclusions remove)."""
    from recsys.ranking.base import top_k
    from recsys.training.blend_weights import _grid_ndcg

    sources, queries = text_and_noise(world), world.queries()
    relevant = [np.asarray(r) for r in world.held_out]
    relevant[0] = np.concatenate([relevant[0], world.histories[0][:1], relevant[0]])
    for method in ("zscore", "rank"):
        config = TWO.model_copy(update={"weight_grid": 4, "normalize": method})
        ranker = BlendedRanker(sources, SegmentWeights.uniform(config.sources, [0, 5, 50]), config)
        grid = simplex_grid(2, 4)
        fast = _grid_ndcg(ranker, queries, relevant, world.histories, grid, 10)
        cands = ranker.candidates(queries, world.histories)
        for g, weights in enumerate(grid):
            blended, _ = blend_scores(cands, np.broadcast_to(weights, (len(queries), 2)))
            cols, _ = top_k(blended, 10)
            ranked = np.where(
                cols >= 0, np.take_along_axis(cands.items, np.maximum(cols, 0), 1), -1
            )
            expected = per_user_metrics(ranked, relevant, 10, ("ndcg",))["ndcg"]
            np.testing.assert_allclose(fast[g], expected, rtol=0, atol=1e-12)
        assert (fast > 0).any() and np.ptp(fast.mean(axis=1)) > 0  # the grid points differ
