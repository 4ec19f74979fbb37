"""Learning the blend weights: the simplex grid, recovering the informative source, per-segment
weights where a segment gains clearly, fixed weights."""

import itertools

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
from recsys.training import blend_weights
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


def test_bagged_weights_average_the_resamples_best_points_and_report_their_own_ndcg(
    monkeypatch,
):
    """weight_choice = "bagged": the mean of bootstrap resamples' best grid points — off the
    grid, still the informative source first, per segment where a segment gains clearly — and
    the NDCG the stats report is that of the bagged weights as the ranker serves them."""
    world = make_world(drift_after=5)
    sources = {
        "text": ContentRecommender(world.item_vectors, HistoryMeanEncoder()),
        "collab": ContentRecommender(world.item_vectors, NextTopicEncoder(world.topic)),
    }
    args = (sources, world.queries(), world.held_out, world.histories)
    config = TWO.model_copy(update={"weight_grid": 11, "weight_choice": "bagged"})
    weights = learn_weights(*args, config, 10, 20)
    best = learn_weights(*args, config.model_copy(update={"weight_choice": "best"}), 10, 20)
    assert weights == learn_weights(*args, config, 10, 20)  # seeded resamples
    monkeypatch.setattr(blend_weights._Batches, "CACHE_BYTES", 0)  # no candidates kept
    assert weights == learn_weights(*args, config, 10, 20)  # the second pass builds them again
    on_grid = np.isclose(np.array(list(weights.default.values())) * 10 % 1, 0).all()
    assert not on_grid and weights.default != best.default  # the resamples disagree
    assert sum(weights.default.values()) == pytest.approx(1.0)
    assert abs(weights.default["text"] - best.default["text"]) <= 0.1
    assert weights.default["text"] > weights.default["collab"]
    assert weights.stats["chosen"]["6-50"] == "own" and weights.stats["choice"] == "bagged"
    assert weights.per_segment["6-50"]["collab"] > weights.per_segment["6-50"]["text"]
    assert weights.stats["grid_points"] == simplex_grid(2, 11).shape[0]
    ranked, _ = BlendedRanker(sources, weights, config).recommend(
        world.queries(), 10, world.histories
    )
    ndcg = per_user_metrics(ranked, world.held_out, 10, ("ndcg",))["ndcg"]
    segments = BlendedRanker(sources, weights, config).segments(world.queries())
    assert weights.stats["ndcg"]["all"] != pytest.approx(best.stats["ndcg"]["all"])
    served_default = BlendedRanker(
        sources, SegmentWeights.fixed(weights.default, [0, 5, 50]), config
    ).recommend(world.queries(), 10, world.histories)[0]
    default_ndcg = per_user_metrics(served_default, world.held_out, 10, ("ndcg",))["ndcg"]
    assert weights.stats["ndcg"]["all"] == pytest.approx(default_ndcg.mean())
    assert weights.stats["ndcg"]["6-50"] == pytest.approx(ndcg[segments == 2].mean())


def test_fixed_weights_bypass_learning(world):
    config = TWO.model_copy(update={"fixed_weights": {"text": 3.0, "collab": 1.0}})
    weights = learn_weights(text_and_noise(world), [], [], None, config)
    assert weights.default == {"text": 0.75, "collab": 0.25} and weights.per_segment == {}
    bad = TWO.model_copy(update={"fixed_weights": {"popularity": 1.0}})
    with pytest.raises(ValueError, match="not in blend.sources"):
        learn_weights(text_and_noise(world), [], [], None, bad)


@pytest.mark.parametrize("group", [64, 3])  # relevant items blended together
def test_grid_ndcg_equals_the_metric_on_each_grid_points_top_k(world, group, monkeypatch):
    """The rank-based NDCG of the weight search is per_user_metrics on top_k's list for every
    grid point — ties included (rank normalisation ties many scores; one query holds two
    relevant items, one of them a history item the exclusions remove) — although it skips the
    relevant items that k candidates beat on every source, and blends each relevant item only
    with the candidates whose order against it the weights can change."""
    from recsys.ranking.base import top_k
    from recsys.training.blend_weights import _grid_ndcg, _relevant_columns, _standing

    monkeypatch.setattr(blend_weights._Batches, "GROUP", group)
    sources, queries = text_and_noise(world), world.queries()
    relevant = [np.asarray(r) for r in world.held_out]
    relevant[0] = np.concatenate([relevant[0], world.histories[0][:1], relevant[0]])
    skipped, contested = [], []
    for method, k in itertools.product(("zscore", "rank"), (10, 3)):
        config = TWO.model_copy(update={"weight_grid": 4, "normalize": method})
        ranker = BlendedRanker(sources, SegmentWeights.uniform(config.sources, [0, 5, 50]), config)
        grid = simplex_grid(2, 4)
        fast = _grid_ndcg(ranker, queries, relevant, world.histories, grid, k)
        cands = ranker.candidates(queries, world.histories)
        rows, cols = _relevant_columns(cands.items, [np.unique(r) for r in relevant])
        ahead, mine = _standing(cands, rows, cols)
        skipped.append(ahead >= k)
        contested.append(mine.sum(axis=1) / cands.valid[rows].sum(axis=1))
        for g, weights in enumerate(grid):
            blended, _ = blend_scores(cands, np.broadcast_to(weights, (len(queries), 2)))
            cols, _ = top_k(blended, k)
            ranked = np.where(
                cols >= 0, np.take_along_axis(cands.items, np.maximum(cols, 0), 1), -1
            )
            expected = per_user_metrics(ranked, relevant, k, ("ndcg",))["ndcg"]
            np.testing.assert_allclose(fast[g], expected, rtol=0, atol=1e-12)
        assert (fast > 0).any() and np.ptp(fast.mean(axis=1)) > 0  # the grid points differ
    skipped = np.concatenate(skipped)
    assert 0 < skipped.sum() < skipped.size  # the search skipped some, scored the rest
    contested = np.concatenate(contested)
    assert contested.max() <= 1 and 0 < contested.mean() < 0.9  # and left candidates out
