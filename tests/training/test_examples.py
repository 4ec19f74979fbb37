"""Training examples: sequences, windows (every target once), pairs, batches, logQ."""

import numpy as np
import polars as pl
import pytest

from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training.examples import (
    item_log_q,
    pair_examples,
    sequence_windows,
    user_sequences,
    window_batch,
)


def test_user_sequences_order_by_time_then_row():
    frame = pl.DataFrame(
        {
            USER_IDX: [1, 0, 1, 1, 0],
            ITEM_IDX: [7, 3, 5, 6, 4],
            TIMESTAMP: [20, 5, 10, 10, 1],
            ROW: [0, 1, 2, 3, 4],
        }
    )
    seqs = user_sequences(frame, n_users=3)
    assert [s.tolist() for s in seqs] == [[4, 3], [5, 6, 7], []]


def test_user_sequences_reject_missing_columns():
    with pytest.raises(ValueError, match="missing"):
        user_sequences(pl.DataFrame({USER_IDX: [0], ITEM_IDX: [1]}), 1)


@pytest.mark.parametrize("length", [1, 2, 5, 11, 12, 30])
@pytest.mark.parametrize("profile", [False, True])
def test_windows_train_every_target_exactly_once(length, profile):
    seqs = [np.arange(100, 100 + length)]
    has_profile = np.array([profile])
    windows = sequence_windows(seqs, history_len=5, has_profile=has_profile)
    first = 0 if profile else 1
    if length <= first:
        assert len(windows) == 0  # nothing to predict
        return
    inputs, mask, targets = window_batch(seqs, windows, has_profile)
    assert mask.sum(dim=1).max() <= 5  # never longer than history_len
    trained = sorted(targets[targets >= 0].tolist())
    assert trained == list(range(100 + first, 100 + length))
    # each input position predicts the next item of the sequence
    for row in range(len(windows)):
        n = int(mask[row].sum())
        real = inputs[row, :n].tolist()
        assert targets[row, 1 : n + 1].tolist() == [x + 1 for x in real]


def test_pair_examples_need_a_history_or_a_profile():
    seqs = [np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)]
    users, positions = pair_examples(seqs, np.array([False, True, True]))
    assert list(zip(users.tolist(), positions.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 0)]


def test_item_log_q_is_batch_inclusion_probability():
    targets = np.array([0, 0, 0, 1])  # p(0) = 0.75, p(1) = 0.25, item 2 unseen
    log_q = item_log_q(targets, 3, batch_size=2)
    expected = np.log([1 - 0.25**2, 1 - 0.75**2, 1 - 0.75**2])
    np.testing.assert_allclose(log_q, expected, rtol=1e-6)
