"""Collab stage: item token features for LightFM's hybrid mode, from the item text columns.

Reads Dataset.items (text columns such as title, genres, categories); writes a binary csr matrix
(n_items, n_tokens) and the token names ("column:word"). Words are split on anything that is not
a letter or digit, so "Action|Comedy" and "Action, Comedy" both give action and comedy tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.schema import ITEM_IDX

TOKEN = "token"


def item_token_features(
    dataset: Dataset,
    columns: Sequence[str] | None = None,
    min_items: int = 2,
    max_share: float = 0.5,
    max_tokens: int = 5000,
) -> tuple[sp.csr_matrix, list[str]]:
    """Binary (n_items, n_tokens) features: tokens carried by at least `min_items` items and by
    at most `max_share` of the catalog, the `max_tokens` most frequent. Token names sorted."""
    columns = list(dataset.item_text_columns if columns is None else columns)
    missing = [c for c in columns if c not in dataset.items.columns]
    if missing:
        raise ValueError(
            f"item features from {dataset.source or 'items'}: columns {missing} not found; "
            f"available: {dataset.items.columns}"
        )
    n_items = dataset.n_items
    frames = [
        dataset.items.select(
            pl.col(ITEM_IDX),
            pl.col(column)
            .cast(pl.Utf8)
            .fill_null("")
            .str.to_lowercase()
            .str.extract_all(r"[^\W_]+")
            .alias(TOKEN),
        )
        .explode(TOKEN)  # one row per (item, word); an item without words gives a null
        .with_columns((pl.lit(f"{column}:") + pl.col(TOKEN)).alias(TOKEN))
        for column in columns
    ]
    if not frames:
        return sp.csr_matrix((n_items, 0), dtype=np.float32), []
    pairs = pl.concat(frames).drop_nulls().unique()  # (item_idx, token), one row per pair
    counts = (
        pairs.group_by(TOKEN)
        .len()
        .filter((pl.col("len") >= min_items) & (pl.col("len") <= max_share * n_items))
        .sort(["len", TOKEN], descending=[True, False])
        .head(max_tokens)
        .sort(TOKEN)
    )
    vocabulary = counts[TOKEN].to_list()
    lookup = pl.DataFrame({TOKEN: vocabulary, "col": np.arange(len(vocabulary), dtype=np.int64)})
    kept = pairs.join(lookup, on=TOKEN, how="inner")
    rows = kept[ITEM_IDX].to_numpy().astype(np.int64)
    cols = kept["col"].to_numpy()
    values = np.ones(rows.size, dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n_items, len(vocabulary)))
    return matrix, vocabulary
