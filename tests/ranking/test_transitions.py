"""TransitionsRecommender: the shared contract, hand-computed transition weights (window, gap
decay, row normalisation, self-transitions), time order read from the timestamps, the top-N cut,
the recency choice on what follows the newest item, save/load, and a nightly that publishes it."""

import json

import numpy as np
import polars as pl
import pytest
from contract import RecommenderContract, contract_matrix
from support import build_test_bundle

from recsys import bundle
from recsys.config import TransitionsConfig
from recsys.ranking.base import Query
from recsys.ranking.model import RecommenderModel
from recsys.ranking.transitions import TransitionsRecommender
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training.recency import choose_recency


def _frame(sequences: list[list[int]], shuffle: bool = False) -> pl.DataFrame:
    """One user per sequence, timestamps in sequence order; shuffle: rows written out of order."""
    rows = [(u, item, t) for u, seq in enumerate(sequences) for t, item in enumerate(seq)]
    users, items, times = (list(c) for c in zip(*rows, strict=True))
    frame = pl.DataFrame({USER_IDX: users, ITEM_IDX: items, TIMESTAMP: times})
    if shuffle:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=3)
    return frame.with_columns(pl.int_range(pl.len()).alias(ROW))


def _fit(sequences, n_items=4, **config) -> TransitionsRecommender:
    return TransitionsRecommender.fit_frame(
        _frame(sequences, shuffle=True), len(sequences), n_items, TransitionsConfig(**config)
    )


class TestTransitionsContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        users, items = contract_matrix().nonzero()
        users, items = np.tile(users, 2), np.tile(items, 2)  # each user's items twice, so
        order = np.random.default_rng(0).permutation(users.size)  # every item is followed
        frame = pl.DataFrame({USER_IDX: users, ITEM_IDX: items, TIMESTAMP: order, ROW: order})
        return TransitionsRecommender.fit_frame(frame, 30, 24, TransitionsConfig(window=24))


# u0: 0 -> 1 -> 2; u1: 0 -> 2. window 2, gap_decay 0.5: gap 1 counts 1, gap 2 counts 0.5.
# raw W[0,1] = 1 (u0), W[0,2] = 0.5 (u0, gap 2) + 1 (u1) = 1.5, W[1,2] = 1 (u0); rows / sums.
HAND = np.array([[0, 0.4, 0.6, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_weights_by_hand_from_time_order_not_file_order():
    rec = _fit([[0, 1, 2], [0, 2]], window=2, gap_decay=0.5)
    np.testing.assert_allclose(rec.weights.toarray(), HAND, rtol=1e-6)
    assert rec.trained.tolist() == [True, True, True, False]
    # window 1: only the next interaction follows
    rec = _fit([[0, 1, 2], [0, 2]], window=1)
    np.testing.assert_allclose(rec.weights.toarray()[0], [0, 0.5, 0.5, 0], rtol=1e-6)


def test_reversed_time_reverses_what_follows_what():
    forward = _fit([[0, 1, 2], [0, 2]], window=2, gap_decay=0.5).weights.toarray()
    backward = _fit([[2, 1, 0], [2, 0]], window=2, gap_decay=0.5).weights.toarray()
    assert forward[0, 2] > 0 and forward[2, 0] == 0
    assert backward[2, 0] > 0 and backward[0, 2] == 0


def test_an_item_followed_by_itself_teaches_nothing():
    rec = _fit([[1, 1, 0]], window=2, gap_decay=0.5)
    weights = rec.weights.toarray()
    assert weights[1, 1] == 0 and weights[1, 0] == pytest.approx(1.0)  # (1 + 0.5) / 1.5


def test_each_item_keeps_its_top_n_followers():
    rec = _fit([[0, 1], [0, 1], [0, 2], [0, 3]], window=1, top_n=1)
    assert rec.weights.getnnz(axis=1).tolist() == [1, 0, 0, 0]
    assert rec.weights[0, 1] == pytest.approx(0.5)  # 2 of the 4 transitions, before the cut


def test_a_history_scores_by_what_followed_its_items_newest_first():
    rec = _fit([[0, 1, 2], [0, 2]], window=2, gap_decay=0.5, recency=0.5)
    scores = rec.score([Query(-1, np.array([1, 0])), Query(-1, np.array([3])), Query()])
    # history 1 then 0: row W[0] (newest) + 0.5 * row W[1]
    np.testing.assert_allclose(scores[0, :3], [0, 0.4, 0.6 + 0.5 * 1.0], rtol=1e-6)
    assert np.isneginf(scores[:, 3]).all()  # never interacted with
    assert np.isneginf(scores[1]).all() and np.isneginf(scores[2]).all()  # nothing to go on


def test_the_recency_choice_follows_what_comes_next():
    """Each user: two episodes of four items, each followed by the partner of the episode's
    newest item (a strong decay) or of its oldest (the mildest); the first episodes teach the
    transitions, the held-out newest item is the second partner. choose_recency sees which from
    the frame alone."""
    rng = np.random.default_rng(2)
    for follows_newest in (True, False):
        sequences = []
        for _ in range(500):
            sequence = []
            for _ in range(2):
                items = [int(i) for i in rng.choice(200, 4, replace=False)]
                key = items[-1] if follows_newest else items[0]
                sequence += [*items, 200 + key % 20]
            sequences.append(sequence)
        frame = _frame(sequences)
        chosen, scores = choose_recency(
            frame, 500, 220, TransitionsConfig(), TransitionsRecommender
        )
        if follows_newest:
            assert chosen <= 0.5 and scores[chosen] > scores[0.9] + 0.05
        else:
            assert chosen == 0.9 and scores[0.9] > scores[0.3] + 0.05


def test_save_load_round_trip_and_a_clear_error(tmp_path):
    rec = _fit([[0, 1, 2], [0, 2]], window=2, gap_decay=0.5, recency=0.7)
    rec.save(tmp_path / "t")
    loaded = TransitionsRecommender.load(tmp_path / "t")
    assert loaded.config == rec.config
    np.testing.assert_array_equal(loaded.weights.toarray(), rec.weights.toarray())
    meta = json.loads((tmp_path / "t" / "transitions.json").read_text())
    (tmp_path / "t" / "transitions.json").write_text(json.dumps({**meta, "kind": "neighbors"}))
    with pytest.raises(ValueError, match="kind 'neighbors', expected 'transitions'"):
        TransitionsRecommender.load(tmp_path / "t")
    with pytest.raises(FileNotFoundError, match="transitions.npz"):
        TransitionsRecommender.load(tmp_path / "empty")


def test_bad_input_and_config_are_named():
    with pytest.raises(ValueError, match=r"item_idx: expected values in \[0, 2\)"):
        _fit([[0, 1, 2]], n_items=2)
    with pytest.raises(ValueError, match="window"):
        TransitionsConfig(window=0)
    with pytest.raises(ValueError, match="gap_decay"):
        TransitionsConfig(gap_decay=1.5)


@pytest.mark.slow
def test_the_default_nightly_learns_its_weight_and_serves_it(tmp_path):
    """A default source: the nightly fits it, the weight search includes it, the bundle saves
    it, and with a weight on it answers carry sources.transitions."""
    build_test_bundle(tmp_path / "learned")
    ranker_dir = bundle.current_bundle(tmp_path / "learned") / "ranker"
    weights = json.loads((ranker_dir / "weights.json").read_text())
    assert "transitions" in weights["default"]
    assert (ranker_dir / "transitions" / "transitions.npz").is_file()

    fixed = {"text": 0.4, "collab": 0.2, "popularity": 0.1, "neighbors": 0.1, "transitions": 0.2}
    build_test_bundle(tmp_path / "fixed", blend={"fixed_weights": fixed})
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "fixed"))
    items = [model.item_map.to_id(i) for i in range(4)]
    answer = model.recommend(item_ids=items, k=5)
    assert any(i["sources"]["transitions"] for i in answer["items"]), answer
    profile_only = model.recommend(profile_text="space adventure", k=5)
    assert all(i["sources"]["transitions"] is None for i in profile_only["items"])
