"""Column names and dtypes of the canonical tables; every stage reads these constants."""

import polars as pl

# External ids (strings, as the user's data has them) and contiguous indices (int32).
USER_ID = "user_id"
ITEM_ID = "item_id"
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

TIMESTAMP = "timestamp"  # int64 epoch seconds
WEIGHT = "weight"  # float32, 1.0 when absent
RATING = "rating"  # optional explicit rating, used only for the positive threshold
ROW = "row"  # position in the source file, the tie-breaker for equal timestamps

INTERACTION_DTYPES: dict[str, pl.DataType] = {
    USER_IDX: pl.Int32,
    ITEM_IDX: pl.Int32,
    TIMESTAMP: pl.Int64,
    WEIGHT: pl.Float32,
    ROW: pl.Int64,
}

# Bundle-facing output of batch recommendation.
RANK = "rank"
SCORE = "score"
