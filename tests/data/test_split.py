"""Splits: hand-computed cases, and properties (order, exact partition) checked with hypothesis."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recsys.config import SplitConfig
from recsys.data.split import Split, restrict_to_cold_items, split_interactions
from recsys.schema import INTERACTION_DTYPES, ITEM_IDX, ROW, TIMESTAMP, USER_IDX, WEIGHT

ORDER = [USER_IDX, TIMESTAMP, ROW]


def _frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """(user_idx, item_idx, timestamp) triples -> canonical interactions, ROW = position + 1."""
    data = {
        USER_IDX: [r[0] for r in rows],
        ITEM_IDX: [r[1] for r in rows],
        TIMESTAMP: [r[2] for r in rows],
        WEIGHT: [1.0] * len(rows),
        ROW: list(range(1, len(rows) + 1)),
    }
    return pl.DataFrame(data, schema=INTERACTION_DTYPES)


def _rows(frame: pl.DataFrame) -> list[int]:
    return frame[ROW].to_list()


def test_leave_last_out_known_answer():
    # user 0: rows 1..4, rows 3 and 4 tie at t=9 (row 4 is newer); user 1: two; user 2: one
    frame = _frame([(0, 0, 1), (0, 1, 5), (0, 2, 9), (0, 3, 9), (1, 0, 3), (1, 1, 2), (2, 0, 1)])
    split = split_interactions(frame, SplitConfig(n_test=1, n_valid=1, min_history=1))
    assert _rows(split.test) == [4, 5]  # user 1's newest is row 5 (t=3)
    assert _rows(split.valid) == [3]  # user 0's; user 1 keeps 1 train row, too few for valid too
    assert _rows(split.train) == [1, 2, 6, 7]
    strict = split_interactions(frame, SplitConfig(n_test=1, n_valid=0, min_history=2))
    assert _rows(strict.test) == [4] and _rows(strict.train) == [1, 2, 3, 6, 5, 7]


def test_time_cut_known_answer():
    frame = _frame([(0, 0, 100), (0, 1, 200), (0, 2, 300), (1, 0, 250), (2, 1, 50), (2, 2, 60)])
    config = SplitConfig(method="time_cut", time_cut="250", n_valid=1, min_history=1)
    split = split_interactions(frame, config)
    assert _rows(split.test) == [3, 4]  # at/after the cut; user 1 is a cold user there
    assert _rows(split.valid) == [2, 6]
    assert _rows(split.train) == [1, 5]
    iso = SplitConfig(method="time_cut", time_cut="1970-01-01T00:04:10Z", n_valid=0)
    assert _rows(split_interactions(frame, iso).test) == [3, 4]
    assert split_interactions(frame, iso).valid.height == 0


def test_restrict_to_cold_items():
    frame = _frame([(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 2, 1), (1, 3, 2), (1, 4, 3)])
    split = split_interactions(frame, SplitConfig(n_test=1, n_valid=1))
    cold = restrict_to_cold_items(split)
    assert_frame_equal(cold.train, split.train)
    assert _rows(split.valid) == [2, 5] and _rows(cold.valid) == [2, 5]
    assert _rows(split.test) == [3, 6] and _rows(cold.test) == [6]  # item 2 is in user 1's train


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SplitConfig(method="time_cut"), "needs time_cut"),
        (SplitConfig(time_cut="2021-01-01"), "method = 'time_cut'"),
        (SplitConfig(method="time_cut", time_cut="soon"), "'soon'"),
    ],
)
def test_bad_split_configs(config, message):
    with pytest.raises(ValueError, match=message):
        split_interactions(_frame([(0, 0, 1)]), config)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="'row'"):
        split_interactions(_frame([(0, 0, 1)]).drop(ROW), SplitConfig())


def _check_order_and_partition(frame: pl.DataFrame, split: Split) -> None:
    for part in (split.train, split.valid, split.test):
        assert part.schema == frame.schema
        assert_frame_equal(part, part.sort(ORDER))
    together = pl.concat([split.train, split.valid, split.test]).sort(ORDER)
    assert_frame_equal(together, frame.sort(ORDER))
    # parts are sorted by ORDER, so a group's last row is its newest and its first the oldest
    newest_train = split.train.group_by(USER_IDX).last().select(USER_IDX, TIMESTAMP, ROW)
    for held in (split.valid, split.test):
        oldest = held.group_by(USER_IDX).first().select(USER_IDX, TIMESTAMP, ROW)
        both = newest_train.join(oldest, on=USER_IDX, suffix="_held")
        later = (pl.col(f"{TIMESTAMP}_held") > pl.col(TIMESTAMP)) | (
            (pl.col(f"{TIMESTAMP}_held") == pl.col(TIMESTAMP))
            & (pl.col(f"{ROW}_held") > pl.col(ROW))
        )
        assert both.filter(~later).height == 0


interactions = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 6)), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(
    rows=interactions,
    n_test=st.integers(1, 3),
    n_valid=st.integers(0, 2),
    min_history=st.integers(1, 3),
)
def test_leave_last_out_properties(rows, n_test, n_valid, min_history):
    frame = _frame(rows)
    config = SplitConfig(n_test=n_test, n_valid=n_valid, min_history=min_history)
    split = split_interactions(frame, config)
    _check_order_and_partition(frame, split)
    counts = frame.group_by(USER_IDX).len()
    for user, n in counts.iter_rows():
        tests = n_test if n - n_test >= min_history else 0
        valids = n_valid if tests and n - n_test - n_valid >= min_history else 0
        assert split.test.filter(pl.col(USER_IDX) == user).height == tests
        assert split.valid.filter(pl.col(USER_IDX) == user).height == valids


@settings(max_examples=60, deadline=None)
@given(
    rows=interactions, cut=st.integers(0, 7), n_valid=st.integers(0, 2), history=st.integers(1, 3)
)
def test_time_cut_properties(rows, cut, n_valid, history):
    frame = _frame(rows)
    config = SplitConfig(method="time_cut", time_cut=str(cut), n_valid=n_valid, min_history=history)
    split = split_interactions(frame, config)
    _check_order_and_partition(frame, split)
    assert (split.test[TIMESTAMP] >= cut).all() and (split.train[TIMESTAMP] < cut).all()
    before = frame.filter(pl.col(TIMESTAMP) < cut).group_by(USER_IDX).len()
    for user, n in before.iter_rows():
        valids = n_valid if n - n_valid >= history else 0
        assert split.valid.filter(pl.col(USER_IDX) == user).height == valids
