"""A/B core: identical variants, planted gains and losses, the verdict rule, segments, JSON."""

import json

import numpy as np
import pytest

from recsys.config import EvalConfig
from recsys.evaluation.compare import EXPLORATORY, PRIMARY, Cell, Comparison, compare
from recsys.evaluation.evaluate import EvalInput, evaluate_ab, evaluate_variant
from recsys.evaluation.segments import (
    build_segments,
    heldout_item_segments,
    history_segments,
    popularity_buckets,
    popularity_segments,
)
from recsys.evaluation.verdict import verdict

FAST = EvalConfig(bootstrap=200)


def test_identical_variants_are_inconclusive_with_zero_lift(synthetic):
    ranked_a, _, data = synthetic(n_users=800)
    result = evaluate_ab(ranked_a, ranked_a.copy(), data, FAST)
    for cell in result.comparison.cells:
        assert cell.diff == 0.0
        assert cell.lift == 0.0 or np.isnan(cell.lift)  # nan: both means 0 in a tiny segment
        assert not cell.significant
    assert result.verdict.decision == "inconclusive"
    assert "no significant difference" in result.verdict.reasons[0]
    assert result.overlap.min() == 1.0


def test_planted_improvement_is_promoted(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=1500, p_a=0.15, p_b=0.30)
    result = evaluate_ab(ranked_a, ranked_b, data, FAST)
    cell = result.comparison.cell("ndcg")
    assert cell.mean_b > cell.mean_a and cell.significant
    assert cell.lift_ci[0] > 0  # the whole CI of the lift is a gain
    # hit rate is the planted rate: B's CI holds 0.30, A's holds 0.15
    hit = result.comparison.cell("hit_rate")
    assert hit.ci_a[0] <= 0.15 <= hit.ci_a[1] and hit.ci_b[0] <= 0.30 <= hit.ci_b[1]
    assert result.verdict.decision == "promote"
    assert result.verdict.metric == "ndcg" and "ndcg@10" in result.verdict.rule


def test_planted_regression_is_held(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=1500, p_a=0.30, p_b=0.15)
    result = evaluate_ab(ranked_a, ranked_b, data, FAST)
    assert result.verdict.decision == "hold"
    assert "significantly worse" in result.verdict.reasons[0]
    assert any(r.startswith("regression (exploratory):") for r in result.verdict.reasons[1:])


def test_gain_below_min_lift_is_inconclusive(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=1500, p_a=0.15, p_b=0.30)
    config = FAST.model_copy(update={"min_lift": 5.0})  # ask for +500%
    result = evaluate_ab(ranked_a, ranked_b, data, config)
    assert result.verdict.decision == "inconclusive"
    assert "min_lift" in result.verdict.reasons[0] and "+500.0%" in result.verdict.rule


def test_correction_is_within_each_family(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.2, p_b=0.25)
    holm = evaluate_ab(ranked_a, ranked_b, data, FAST).comparison
    none = evaluate_ab(ranked_a, ranked_b, data, FAST.model_copy(update={"correction": "none"}))
    assert [(c.metric, c.segment) for c in holm.family(PRIMARY)] == [("ndcg", "all")]
    primary = holm.cell("ndcg")
    assert primary.p_adjusted == primary.p_value  # a family of one: nothing to correct
    exploratory = holm.family(EXPLORATORY)
    assert len(exploratory) == len(holm.cells) - 1
    finite = [c.p_value for c in exploratory if np.isfinite(c.p_value)]
    for corrected, raw in zip(holm.cells, none.comparison.cells, strict=True):
        assert corrected.p_value == raw.p_value
        if np.isfinite(raw.p_value):
            assert corrected.p_adjusted >= raw.p_adjusted
    smallest = min(exploratory, key=lambda c: c.p_value)  # Holm: p_(1) x m
    assert smallest.p_adjusted == pytest.approx(min(1.0, smallest.p_value * len(finite)))
    assert "primary family of 1 test;" in verdict(holm, FAST).rule


def test_primary_decision_does_not_depend_on_secondary_metrics_or_segments(synthetic):
    """The issue: with every cell in one Holm family, the primary p-value (and the decision)
    depended on how many secondary metrics and segments were configured."""
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.2, p_b=0.26, seed=7)
    full = evaluate_ab(ranked_a, ranked_b, data, FAST)  # 5 metrics x ~11 segments
    alone_config = FAST.model_copy(update={"metrics": ["ndcg"]})
    alone = compare(
        {"ndcg": full.a.metrics["ndcg"]}, {"ndcg": full.b.metrics["ndcg"]}, {}, alone_config
    )
    assert len(full.comparison.cells) > 40 and len(alone.cells) == 1
    primary = full.comparison.cell("ndcg")
    assert primary.p_adjusted == alone.cells[0].p_adjusted == primary.p_value
    assert full.verdict.decision == verdict(alone, alone_config).decision == "promote"
    # under the old rule (Holm over all cells) the same data would not have been promoted
    from recsys.evaluation.stats import adjust_pvalues

    all_cells = adjust_pvalues([c.p_value for c in full.comparison.cells], "holm")
    assert all_cells[full.comparison.cells.index(primary)] > FAST.alpha


def test_primary_family_is_corrected_together(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.2, p_b=0.25)
    config = FAST.model_copy(update={"primary_family": ["recall", "hit_rate"]})
    comparison = evaluate_ab(ranked_a, ranked_b, data, config).comparison
    family = comparison.family(PRIMARY)
    assert [c.metric for c in family] == ["ndcg", "recall", "hit_rate"]
    assert all(c.segment == "all" for c in family)
    raw = sorted(c.p_value for c in family)
    assert min(c.p_adjusted for c in family) == pytest.approx(min(1.0, 3 * raw[0]))
    assert "primary family of 3 tests" in verdict(comparison, config).rule


def test_primary_metrics_must_be_configured_metrics():
    with pytest.raises(ValueError, match="not among metrics"):
        EvalConfig(metrics=["ndcg", "recall"], primary_metric="mrr")
    with pytest.raises(ValueError, match=r"\['map'\]"):
        EvalConfig(primary_family=["map", "recall"], metrics=["ndcg", "recall"])


def test_wilcoxon_can_drive_the_decision(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=600, p_a=0.2, p_b=0.25)
    config = FAST.model_copy(update={"test": "wilcoxon"})
    comparison = evaluate_ab(ranked_a, ranked_b, data, config).comparison
    cell = comparison.cell("ndcg")
    assert cell.p_value == cell.p_values["wilcoxon"] != cell.p_values["ttest"]


def test_to_dict_is_strict_json():
    cell = Cell(
        "ndcg",
        "all",
        3,
        0.0,
        (0.0, 0.0),
        0.1,
        (0.0, 0.2),
        0.1,
        (0.0, 0.2),
        float("inf"),
        (float("nan"), float("nan")),
        {"ttest": 0.2},
        0.2,
    )
    comparison = Comparison("A", "B", 10, "ttest", "holm", 0.05, 100, 0, cells=[cell])
    text = json.dumps(comparison.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["cells"][0]["lift"] is None and back["cells"][0]["mean_b"] == 0.1


def test_compare_rejects_mismatched_input():
    a = {"ndcg": np.zeros(4)}
    with pytest.raises(ValueError, match="A has metrics"):
        compare(a, {"recall": np.zeros(4)}, {}, FAST)
    with pytest.raises(ValueError, match="one \\(n_users,\\) array"):
        compare(a, {"ndcg": np.zeros(5)}, {}, FAST)
    with pytest.raises(ValueError, match="segment 'x': expected a bool mask of shape \\(4,\\)"):
        compare(a, {"ndcg": np.zeros(4)}, {"x": np.ones(3, dtype=bool)}, FAST)


def test_history_segments():
    segments = history_segments(np.array([0, 1, 5, 6, 50, 51, 300]), [0, 5, 50])
    assert {k: v.nonzero()[0].tolist() for k, v in segments.items()} == {
        "history 0 (cold)": [0],
        "history 1-5 (light)": [1, 2],
        "history 6-50 (warm)": [3, 4],
        "history 51+ (heavy)": [5, 6],
    }
    assert list(history_segments(np.array([3, 30]), [10])) == ["history 0-10", "history 11+"]


def test_heldout_and_popularity_segments():
    popularity = np.array([100.0, 50.0, 30.0, 10.0, 5.0, 5.0, 0.0])  # total 200
    # cumulative share before each item: 0, .5, .75, .9, .95, .975 -> head, mid, tail, ...
    assert popularity_buckets(popularity).tolist() == [0, 1, 2, 2, 2, 2, 2]
    relevant = [np.array([0]), np.array([6]), np.array([6, 1]), np.array([3])]
    held = heldout_item_segments(relevant, popularity)
    assert held["held-out item cold"].tolist() == [False, True, False, False]
    assert held["held-out item warm"].tolist() == [True, False, False, True]
    assert held["held-out items mixed"].tolist() == [False, False, True, False]
    pop = popularity_segments(relevant, popularity)
    assert pop["held-out popularity head"].tolist() == [True, False, False, False]
    assert pop["held-out popularity mid"].tolist() == [False, False, True, False]  # most popular
    assert pop["held-out popularity tail"].tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="history_lengths has 2 users"):
        build_segments(np.array([1, 2]), relevant, popularity, [0, 5, 50])


def test_segments_reach_the_comparison(synthetic):
    ranked_a, ranked_b, data = synthetic(n_users=500)
    comparison = evaluate_ab(ranked_a, ranked_b, data, FAST).comparison
    by_segment = {c.segment: c.n_users for c in comparison.cells if c.metric == "ndcg"}
    assert by_segment["all"] == 500
    history = [n for s, n in by_segment.items() if s.startswith("history")]
    assert sum(history) == 500  # a partition of the users
    assert by_segment["held-out item cold"] + by_segment["held-out item warm"] == 500


def test_evaluate_variant_beyond_accuracy(synthetic):
    ranked_a, _, data = synthetic(n_users=200)
    result = evaluate_variant(ranked_a, data, FAST, name="A")
    summary = result.summary()
    assert set(summary) >= {"ndcg", "coverage", "popularity_bias", "novelty", "diversity"}
    assert 0 < summary["coverage"] <= 1
    assert result.recommended_popularity.size == (ranked_a >= 0).sum()
    no_vectors = EvalInput(data.relevant, data.history_lengths, data.item_popularity)
    assert "diversity" not in evaluate_variant(ranked_a, no_vectors, FAST).beyond
    extras = evaluate_ab(ranked_a, ranked_a, no_vectors, FAST).extras()
    assert set(extras.beyond) == {"coverage", "popularity_bias", "novelty"}
    with pytest.raises(ValueError, match="expected ranked of shape \\(200, >=10\\)"):
        evaluate_variant(ranked_a[:10], data, FAST)


def test_eval_input_checks_shapes():
    with pytest.raises(ValueError, match="history_lengths must have shape \\(2,\\)"):
        EvalInput([np.array([1]), np.array([2])], np.zeros(3), np.zeros(5))
    with pytest.raises(ValueError, match="item_vectors must be \\(5, dim\\)"):
        EvalInput([np.array([1])], np.zeros(1), np.zeros(5), np.zeros((4, 2)))
