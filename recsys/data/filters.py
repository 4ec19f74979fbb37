"""Data stage: DataConfig options on validated raw interactions (threshold, dedupe, k-core)."""

from __future__ import annotations

import polars as pl

from recsys.config import DataConfig
from recsys.data.errors import DataValidationError
from recsys.data.raw import SOURCE_ROW, RawTable
from recsys.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID


def apply_options(interactions: RawTable, config: DataConfig) -> pl.DataFrame:
    """Rating threshold, then dedupe, then k-core; an error if nothing is left."""
    frame = interactions.frame
    if config.rating_threshold is not None:
        frame = drop_low_ratings(interactions, config.rating_threshold)
    frame = dedupe(frame, config.dedupe)
    frame = k_core(frame, config.min_user_interactions, config.min_item_interactions)
    if frame.height == 0:
        raise DataValidationError(
            f"{interactions.path}: expected interactions left after the data options, found none "
            f"(rows read: {interactions.frame.height}; rating_threshold="
            f"{config.rating_threshold}, dedupe={config.dedupe!r}, min_user_interactions="
            f"{config.min_user_interactions}, min_item_interactions="
            f"{config.min_item_interactions})"
        )
    return frame


def drop_low_ratings(interactions: RawTable, threshold: float) -> pl.DataFrame:
    """Keep interactions with rating >= threshold (explicit feedback -> positives)."""
    if RATING not in interactions.frame.columns:
        found = ", ".join(c for c in interactions.frame.columns if c != SOURCE_ROW)
        raise DataValidationError(
            f"{interactions.path}: rating_threshold = {threshold} needs a {RATING!r} column; "
            f"found columns: {found}"
        )
    return interactions.frame.filter(pl.col(RATING) >= threshold)


def dedupe(frame: pl.DataFrame, keep: str) -> pl.DataFrame:
    """Repeated (user, item) pairs: 'keep' all, or the 'first'/'last' by (timestamp, row)."""
    if keep == "keep":
        return frame
    if keep not in ("first", "last"):
        raise ValueError(f"dedupe: expected 'keep', 'first' or 'last', found {keep!r}")
    if not frame.select(pl.struct(USER_ID, ITEM_ID).is_duplicated().any()).item():
        return frame  # the common case, and 4x cheaper than the sort + unique below
    ordered = frame.sort([TIMESTAMP, SOURCE_ROW])
    kept = ordered.unique(subset=[USER_ID, ITEM_ID], keep=keep, maintain_order=True)
    return kept.sort(SOURCE_ROW)


def k_core(frame: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop interactions of users/items with too few of them, repeated until stable."""
    if min_user <= 1 and min_item <= 1:
        return frame
    while True:
        before = frame.height
        user_ok = pl.len().over(USER_ID) >= min_user
        frame = frame.filter(user_ok)
        item_ok = pl.len().over(ITEM_ID) >= min_item
        frame = frame.filter(item_ok)
        if frame.height == before:
            return frame
