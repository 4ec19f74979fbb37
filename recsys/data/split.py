"""Data stage: splits canonical interactions into train / valid / test (leave-last-out or time cut).

Reads Dataset.interactions (USER_IDX, ITEM_IDX, TIMESTAMP, WEIGHT, ROW); writes three frames of the
same schema, each sorted by (USER_IDX, TIMESTAMP, ROW), that partition the input exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recsys.config import SplitConfig
from recsys.data.timestamps import parse_time
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX

_PART = "__part"  # 0 train, 1 valid, 2 test
TRAIN, VALID, TEST = 0, 1, 2
ORDER = [USER_IDX, TIMESTAMP, ROW]


@dataclass(frozen=True)
class Split:
    """Interaction frames with the schema of Dataset.interactions."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame


def split_interactions(interactions: pl.DataFrame, config: SplitConfig) -> Split:
    """Hold out each user's newest interactions (leave_last_out) or everything after a time cut.

    leave_last_out: per user, ordered by (TIMESTAMP, ROW), the newest `n_test` are test and the
    `n_valid` before them valid. A user keeps `min_history` train interactions at least: when the
    test and valid together would leave fewer, valid is dropped (test only), and when test alone
    would, everything stays in train.
    time_cut: interactions at/after `time_cut` are test (for every user, even those with no
    earlier interaction: cold users); valid is each user's newest `n_valid` earlier interactions,
    when at least `min_history` remain in train.
    """
    missing = [c for c in (USER_IDX, ITEM_IDX, TIMESTAMP, ROW) if c not in interactions.columns]
    if missing:
        raise ValueError(
            f"split_interactions: expected interaction columns {missing}, "
            f"found {interactions.columns}"
        )
    frame = interactions.sort(ORDER)
    if config.method == "time_cut":
        part = _time_cut_parts(config)
    else:
        if config.time_cut is not None:
            raise ValueError(
                f"split: time_cut = {config.time_cut!r} is set but method = 'leave_last_out'; "
                "set method = 'time_cut' to use it, or remove time_cut"
            )
        part = _leave_last_out_parts(config)
    labelled = frame.with_columns(part.alias(_PART))
    return Split(*(labelled.filter(pl.col(_PART) == p).drop(_PART) for p in (TRAIN, VALID, TEST)))


def _leave_last_out_parts(config: SplitConfig) -> pl.Expr:
    """Part label per row of a frame sorted by ORDER."""
    count = pl.len().over(USER_IDX).cast(pl.Int64)  # signed: count - n_test may be < 0
    from_end = count - 1 - pl.int_range(pl.len()).over(USER_IDX)  # 0 = the user's newest
    n_test = pl.when(count - config.n_test >= config.min_history).then(config.n_test).otherwise(0)
    enough = (n_test > 0) & (count - config.n_test - config.n_valid >= config.min_history)
    n_valid = pl.when(enough).then(config.n_valid).otherwise(0)
    return (
        pl.when(from_end < n_test)
        .then(TEST)
        .when(from_end < n_test + n_valid)
        .then(VALID)
        .otherwise(TRAIN)
    )


def _time_cut_parts(config: SplitConfig) -> pl.Expr:
    if config.time_cut is None:
        raise ValueError("split: method = 'time_cut' needs time_cut (ISO-8601 or epoch seconds)")
    try:
        cut = parse_time(config.time_cut)
    except ValueError as exc:
        raise ValueError(f"split.time_cut: {exc}") from None
    before = pl.col(TIMESTAMP) < cut
    n_before = before.cast(pl.Int64).sum().over(USER_IDX)
    # rank among the user's pre-cut interactions, 0 = newest; the frame is sorted by ORDER
    from_end = n_before - before.cast(pl.Int64).cum_sum().over(USER_IDX)
    enough = n_before - config.n_valid >= config.min_history
    is_valid = before & enough & (from_end < config.n_valid)
    return pl.when(~before).then(TEST).when(is_valid).then(VALID).otherwise(TRAIN)


def restrict_to_cold_items(split: Split) -> Split:
    """Valid and test keep only interactions whose item has no train interaction."""
    warm = split.train.select(ITEM_IDX).unique()
    return Split(
        train=split.train,
        valid=split.valid.join(warm, on=ITEM_IDX, how="anti", maintain_order="left"),
        test=split.test.join(warm, on=ITEM_IDX, how="anti", maintain_order="left"),
    )
