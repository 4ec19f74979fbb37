"""The promotion gate's rule on hand-made numbers."""

import pytest

from recsys.config import GateConfig
from recsys.pipeline.gate import decide


def test_first_run_promotes():
    decision = decide({"ndcg": 0.05}, None, GateConfig())
    assert decision.promote and "no champion yet" in decision.reasons


def test_tolerance_is_relative():
    config = GateConfig(metric="ndcg", tolerance=0.1)
    assert decide({"ndcg": 0.091}, {"ndcg": 0.1}, config).promote
    held = decide({"ndcg": 0.089}, {"ndcg": 0.1}, config)
    assert not held.promote and "below the bar 0.0900" in held.reasons[0]


def test_floors_hold_even_without_champion():
    config = GateConfig(floors={"recall": 0.2})
    decision = decide({"ndcg": 0.5, "recall": 0.1}, None, config)
    assert not decision.promote and "below the floor" in decision.reasons[0]
    assert "recall >= 0.2" in decision.rule


def test_unknown_metric_is_an_error():
    with pytest.raises(KeyError, match="gate metric 'mrr'"):
        decide({"ndcg": 0.1}, None, GateConfig(metric="mrr"))


def test_default_floor_refuses_a_candidate_that_ranks_nothing_right():
    zeros = {"ndcg": 0.0, "recall": 0.0, "hit_rate": 0.0}
    decision = decide(zeros, None, GateConfig())
    assert not decision.promote
    assert "ndcg 0.0000 is below the floor 0.001" in decision.reasons


def test_too_few_evaluation_users_hold_the_candidate():
    decision = decide({"ndcg": 0.5}, None, GateConfig(), users=1)
    assert not decision.promote
    assert "1 evaluation users is below the minimum 20" in decision.reasons
    assert decide({"ndcg": 0.5}, None, GateConfig(), users=20).promote
    assert decide({"ndcg": 0.5}, None, GateConfig(min_users=0), users=0).promote
