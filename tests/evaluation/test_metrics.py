"""Metrics kernel: hand-computed cases, padding, duplicates, ties; a cross-check against ranx."""

import math

import numpy as np
import pytest

from recsys.evaluation.metrics import (
    catalog_coverage,
    intra_list_diversity,
    list_overlap,
    novelty,
    per_user_metrics,
    popularity_bias,
)
from recsys.ranking.base import top_k

ALL = ("ndcg", "recall", "mrr", "map", "hit_rate", "precision")


def _d(rank: int) -> float:
    """DCG discount at a 1-based rank."""
    return 1.0 / math.log2(rank + 1)


def test_hand_case_two_users():
    ranked = np.array([[5, 1, 7, 3], [2, 9, 8, 4]])
    relevant = [np.array([1, 3]), np.array([0])]
    m = per_user_metrics(ranked, relevant, k=4, metrics=ALL)
    # user 0: hits at ranks 2 and 4 of |rel| = 2
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["precision"][0] == pytest.approx(0.5)
    assert m["hit_rate"][0] == 1.0
    assert m["mrr"][0] == pytest.approx(0.5)
    assert m["ndcg"][0] == pytest.approx((_d(2) + _d(4)) / (_d(1) + _d(2)))
    assert m["map"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    # user 1: no hit at all
    for name in ALL:
        assert m[name][1] == 0.0


def test_denominator_is_min_of_relevant_and_k():
    ranked = np.array([[0, 1, 9]])
    relevant = [np.arange(5)]  # 5 relevant, k = 2: both slots are hits -> perfect
    m = per_user_metrics(ranked, relevant, k=2, metrics=ALL)
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["ndcg"][0] == pytest.approx(1.0)
    assert m["map"][0] == pytest.approx(1.0)
    m3 = per_user_metrics(ranked, relevant, k=3, metrics=ALL)  # 2 hits of min(5, 3)
    assert m3["recall"][0] == pytest.approx(2 / 3)
    assert m3["ndcg"][0] == pytest.approx((_d(1) + _d(2)) / (_d(1) + _d(2) + _d(3)))
    assert m3["map"][0] == pytest.approx((1 + 1) / 3)


def test_only_first_k_columns_count():
    ranked = np.array([[4, 5, 6, 1]])
    m = per_user_metrics(ranked, [np.array([1])], k=3, metrics=ALL)
    assert all(m[name][0] == 0.0 for name in ALL)
    m4 = per_user_metrics(ranked, [np.array([1])], k=4)
    assert m4["mrr"][0] == pytest.approx(0.25)


def test_padding_never_hits_and_short_lists_are_scored_at_k():
    # user 0 had only two candidates; a relevant "-1" is impossible, so 0 and -1 must stay apart
    ranked = np.array([[3, 0, -1, -1], [-1, -1, -1, -1]])
    relevant = [np.array([0, 2]), np.array([0])]
    m = per_user_metrics(ranked, relevant, k=4, metrics=ALL)
    assert m["recall"][0] == pytest.approx(0.5)
    assert m["mrr"][0] == pytest.approx(0.5)
    assert m["precision"][0] == pytest.approx(0.25)  # padding counts as a miss, not as "no slot"
    assert m["ndcg"][0] == pytest.approx(_d(2) / (_d(1) + _d(2)))
    assert all(m[name][1] == 0.0 for name in ALL)


def test_duplicates_count_once():
    ranked = np.array([[7, 7, 2, 7]])
    relevant = [np.array([7, 7, 3])]  # repeated held-out item: |relevant| = 2
    m = per_user_metrics(ranked, relevant, k=4, metrics=ALL)
    assert m["recall"][0] == pytest.approx(0.5)
    assert m["precision"][0] == pytest.approx(0.25)
    assert m["ndcg"][0] == pytest.approx(_d(1) / (_d(1) + _d(2)))
    assert m["map"][0] == pytest.approx(1.0 / 2)
    assert m["recall"][0] <= 1.0


def test_ties_in_scores_follow_top_k_order():
    # items 1, 2, 3 tie; top_k breaks ties by lower item_idx, so the list is [0, 1, 2] at k = 3
    scores = np.array([[5.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    ranked, _ = top_k(scores, 3)
    assert ranked.tolist() == [[0, 1, 2]]
    m = per_user_metrics(ranked, [np.array([3])], k=3)
    assert m["hit_rate"][0] == 0.0  # item 3 lost the tie
    m = per_user_metrics(ranked, [np.array([2])], k=3)
    assert m["mrr"][0] == pytest.approx(1 / 3)


def test_bad_input_is_rejected_with_a_clear_message():
    ranked = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="empty for rows \\[0\\]"):
        per_user_metrics(ranked, [np.array([], dtype=np.int64)], k=2)
    with pytest.raises(ValueError, match="one array per ranked row"):
        per_user_metrics(ranked, [np.array([1]), np.array([2])], k=2)
    with pytest.raises(ValueError, match="at least k=4 columns"):
        per_user_metrics(ranked, [np.array([1])], k=4)
    with pytest.raises(ValueError, match="unknown metric"):
        per_user_metrics(ranked, [np.array([1])], k=2, metrics=("auc",))
    with pytest.raises(ValueError, match="integer item_idx"):
        per_user_metrics(ranked.astype(float), [np.array([1])], k=2)
    with pytest.raises(ValueError, match=">= 0"):
        per_user_metrics(ranked, [np.array([-1])], k=2)


def _ranx_scores(ranked, relevant, metric):
    from ranx import Qrels, Run, evaluate

    qid = [f"q{u:06d}" for u in range(len(relevant))]  # zero-padded: ranx orders ids as text
    qrels = Qrels({q: {f"d{i}": 1 for i in rel} for q, rel in zip(qid, relevant, strict=True)})
    run = Run(
        {
            q: {f"d{i}": float(len(row) - j) for j, i in enumerate(row) if i >= 0}
            for q, row in zip(qid, ranked, strict=True)
        }
    )
    return np.asarray(evaluate(qrels, run, metric, return_mean=False, make_comparable=True))


@pytest.mark.slow  # ranx's numba start-up alone takes 10-30 s
def test_matches_ranx_on_random_data():
    """ranx divides recall and MAP by |relevant| (we use min(|relevant|, k)): every user here has
    |relevant| <= k so the conventions coincide. Lists are distinct items with strictly
    decreasing scores and may be short (padding), so no ties and no duplicates reach ranx."""
    rng = np.random.default_rng(7)
    n_users, n_items, k = 400, 60, 10
    ranked = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        length = rng.integers(3, k + 1)
        ranked[u, :length] = rng.choice(n_items, size=length, replace=False)
    relevant = [rng.choice(n_items, size=rng.integers(1, k + 1), replace=False) for _ in ranked]
    ours = per_user_metrics(ranked, relevant, k)
    for name in ("ndcg", "recall", "mrr", "map", "hit_rate"):
        theirs = _ranx_scores(ranked, relevant, f"{name}@{k}")
        np.testing.assert_allclose(ours[name], theirs, rtol=0, atol=1e-9, err_msg=name)
        assert ours[name].std() > 0  # the data exercise the metric (not all zeros)


def test_large_input_is_vectorised():
    rng = np.random.default_rng(0)
    ranked = rng.integers(0, 5000, size=(100_000, 10))
    relevant = list(rng.integers(0, 5000, size=(100_000, 1)))
    m = per_user_metrics(ranked, relevant, 10)
    # each list has ~10 distinct of 5000 items: hit rate ~ 0.002
    assert 0.0005 < m["hit_rate"].mean() < 0.005
    assert m["ndcg"].shape == (100_000,)


def test_catalog_coverage():
    ranked = np.array([[0, 1, -1], [1, 2, 2]])
    assert catalog_coverage(ranked, n_items=6) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="catalog has 2 items"):
        catalog_coverage(ranked, n_items=2)


def test_popularity_bias_and_novelty():
    pop = np.array([10.0, 0.0, 6.0])
    ranked = np.array([[0, 2, -1], [1, 1, -1], [-1, -1, -1]])
    bias = popularity_bias(ranked, pop)
    assert bias[0] == pytest.approx(8.0)
    assert bias[1] == pytest.approx(0.0)  # the repeated item counts once
    assert np.isnan(bias[2])
    nov = novelty(ranked, pop)
    p = (pop + 1) / (pop.sum() + 3)
    assert nov[0] == pytest.approx((-math.log2(p[0]) - math.log2(p[2])) / 2)
    assert nov[1] == pytest.approx(-math.log2(p[1]))
    assert nov[1] > nov[0]  # less popular lists are more novel
    assert np.isnan(nov[2])


def test_intra_list_diversity():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [1.0, 1.0]])
    ranked = np.array([[0, 1, 2], [0, 2, -1], [3, -1, -1], [0, 0, 1]])
    ild = intra_list_diversity(ranked, vectors)
    # pairs of list 0: (0,1) cos 0, (0,2) cos 1, (1,2) cos 0 -> distances 1, 0, 1
    assert ild[0] == pytest.approx(2 / 3)
    assert ild[1] == pytest.approx(0.0)
    assert np.isnan(ild[2])  # one item: no pair
    assert ild[3] == pytest.approx(1.0)  # the repeat is dropped, leaving one orthogonal pair


def test_list_overlap():
    a = np.array([[1, 2, 3], [1, 2, -1], [-1, -1, -1], [4, 5, 6]])
    b = np.array([[3, 2, 1], [2, 9, -1], [-1, -1, -1], [7, 8, 9]])
    np.testing.assert_allclose(list_overlap(a, b), [1.0, 1 / 3, 1.0, 0.0])
