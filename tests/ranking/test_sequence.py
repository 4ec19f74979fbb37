"""The sequence source (recsys.ranking.sequence, fitted by recsys.training.sequence): a real
SASRec trained on small generated logs, its next-item scores, save/load, bad input, the nightly."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from contract import RecommenderContract, contract_matrix
from support import build_test_bundle

from recsys import bundle
from recsys.config import SequenceConfig
from recsys.ranking.base import Query
from recsys.ranking.model import RecommenderModel
from recsys.ranking.sequence import SequenceRecommender
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training.sequence import fit_sequence

TINY = {"max_len": 8, "hidden": 16, "dropout": 0.0, "lr": 1e-2, "max_epochs": 40, "patience": 5}


def _frame(sequences: list[list[int]]) -> pl.DataFrame:
    """One user per sequence, timestamps in sequence order, rows written out of order."""
    rows = [(u, item, t) for u, seq in enumerate(sequences) for t, item in enumerate(seq)]
    users, items, times = (list(c) for c in zip(*rows, strict=True))
    frame = pl.DataFrame({USER_IDX: users, ITEM_IDX: items, TIMESTAMP: times})
    frame = frame.sample(fraction=1.0, shuffle=True, seed=3)
    return frame.with_columns(pl.int_range(pl.len()).alias(ROW))


def _cycles(n_users: int = 150, n_cycle: int = 12, step: int = 1, seed: int = 0) -> list[list[int]]:
    """Users walking a cycle of items 0..n_cycle-1 from a random start, `step` at a time."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        start, length = int(rng.integers(n_cycle)), int(rng.integers(4, 10))
        out.append([(start + step * t) % n_cycle for t in range(length)])
    return out


@pytest.fixture(scope="module")
def cyclic() -> SequenceRecommender:
    """Items 0..11 in a cycle; 12..14 never interacted with."""
    return fit_sequence(_frame(_cycles()), 15, SequenceConfig(**TINY))


class TestSequenceContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        users, items = contract_matrix().nonzero()
        order = np.random.default_rng(0).permutation(users.size)
        frame = pl.DataFrame({USER_IDX: users, ITEM_IDX: items, TIMESTAMP: order, ROW: order})
        return fit_sequence(frame, 24, SequenceConfig(**{**TINY, "max_epochs": 3}))


def test_it_learns_what_comes_next_in_time_order(cyclic):
    histories = [np.array([s, (s + 1) % 12, (s + 2) % 12]) for s in range(12)]
    top, _ = cyclic.recommend([Query(-1, h) for h in histories], 1, exclude=histories)
    np.testing.assert_array_equal(top[:, 0], (np.arange(12) + 3) % 12)
    # the order is read from timestamps: the same walk backwards predicts the other neighbour
    backwards = fit_sequence(_frame(_cycles(step=-1)), 15, SequenceConfig(**TINY))
    history = np.array([5, 4, 3])
    assert backwards.recommend([Query(-1, history)], 1, exclude=[history])[0][0, 0] == 2
    assert cyclic.similar_items(7, 1)[0][0] == 8


def test_the_epoch_is_chosen_on_held_out_newest_items():
    config = SequenceConfig(**{**TINY, "valid_users": 40})
    fitted = fit_sequence(_frame(_cycles()), 15, config)
    info = fitted.fit
    assert info["valid_users"] == 40 and info["sequences"] == 150
    assert 1 <= info["best_epoch"] <= info["epochs"] <= config.max_epochs
    assert info["epochs"] - info["best_epoch"] <= config.patience
    assert info["valid_ndcg"] > 0.9  # a cycle is easy once learned
    # too short to hold anything out (< 3 items each): max_epochs, the last kept
    short = fit_sequence(
        _frame([[0, 1], [1, 2], [2, 0]]), 3, SequenceConfig(**{**TINY, "max_epochs": 4})
    )
    assert short.fit["valid_users"] == 0 and short.fit["valid_ndcg"] is None
    assert short.fit["epochs"] == short.fit["best_epoch"] == 4


def test_the_time_cap_ends_training_after_an_epoch():
    config = SequenceConfig(**{**TINY, "max_minutes": 1e-6, "patience": 100})
    assert fit_sequence(_frame(_cycles()), 15, config).fit["epochs"] == 1


def test_cold_items_and_unusable_histories_score_minus_inf(cyclic):
    scores = cyclic.score([Query(3, np.array([1, 2])), Query(-1), Query(-1, np.array([13, 99]))])
    assert np.isfinite(scores[0, :12]).all() and np.isneginf(scores[0, 12:]).all()
    assert np.isneginf(scores[1:]).all()  # no history; only never-interacted or unknown items
    assert cyclic.score([]).shape == (0, 15)
    with pytest.raises(IndexError, match="item_idx 15 out of range"):
        cyclic.similar_items(15, 3)


def test_save_load_round_trip_and_clear_errors(cyclic, tmp_path):
    cyclic.save(tmp_path / "s")
    loaded = SequenceRecommender.load(tmp_path / "s")
    queries = [Query(-1, np.array([4, 5])), Query(2, np.array([0, 1, 2, 3]))]
    np.testing.assert_array_equal(loaded.score(queries), cyclic.score(queries))
    assert loaded.fit == cyclic.fit
    meta = json.loads((tmp_path / "s" / "sequence.json").read_text())
    (tmp_path / "s" / "sequence.json").write_text(json.dumps({**meta, "kind": "transitions"}))
    with pytest.raises(ValueError, match="kind 'transitions', expected 'sequence'"):
        SequenceRecommender.load(tmp_path / "s")
    (tmp_path / "s" / "sequence.pt").unlink()
    with pytest.raises(FileNotFoundError, match="sequence.pt"):
        SequenceRecommender.load(tmp_path / "s")


def test_bad_input_and_config_are_named():
    with pytest.raises(ValueError, match=r"item_idx: expected values in \[0, 2\)"):
        fit_sequence(_frame([[0, 1, 2]]), 2, SequenceConfig(**TINY))
    with pytest.raises(ValueError, match="sequence.hidden: expected a multiple of sequence.heads"):
        SequenceConfig(hidden=10, heads=4)
    with pytest.raises(ValueError, match="max_len"):
        SequenceConfig(max_len=1)


@pytest.mark.slow
def test_an_opt_in_nightly_learns_its_weight_and_serves_it(tmp_path):
    """Blended when asked: the nightly fits it, the weight search includes it, the bundle
    saves it, and with a weight on it answers carry sources.sequence."""
    sources = ["text", "collab", "popularity", "neighbors", "transitions", "sequence"]
    small = {"max_len": 8, "hidden": 16, "max_epochs": 3}
    build_test_bundle(tmp_path / "learned", blend={"sources": sources}, sequence=small)
    ranker_dir = bundle.current_bundle(tmp_path / "learned") / "ranker"
    weights = json.loads((ranker_dir / "weights.json").read_text())
    assert "sequence" in weights["default"]
    assert (ranker_dir / "sequence" / "sequence.pt").is_file()

    fixed = {"text": 0.4, "collab": 0.2, "popularity": 0.1, "sequence": 0.3}
    blend = {"sources": list(fixed), "fixed_weights": fixed}
    build_test_bundle(tmp_path / "fixed", blend=blend, sequence=small)
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "fixed"))
    items = [model.item_map.to_id(i) for i in range(4)]
    answer = model.recommend(item_ids=items, k=5)
    assert any(i["sources"]["sequence"] for i in answer["items"]), answer
    profile_only = model.recommend(profile_text="space adventure", k=5)
    assert all(i["sources"]["sequence"] is None for i in profile_only["items"])
