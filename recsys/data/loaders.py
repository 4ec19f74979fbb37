"""Data stage: reads a data directory (CSV/parquet or MovieLens), validates it, builds a Dataset."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.config import DataConfig
from recsys.data.dataset import Dataset
from recsys.data.errors import DataValidationError
from recsys.data.filters import apply_options
from recsys.data.movielens import detect_movielens, read_movielens
from recsys.data.raw import SOURCE_ROW, RawTable, RawTables, find_table, read_table_file
from recsys.data.validate import validate_tables
from recsys.ids import IdMap
from recsys.schema import (
    INTERACTION_DTYPES,
    ITEM_ID,
    ITEM_IDX,
    ROW,
    TIMESTAMP,
    USER_ID,
    USER_IDX,
    WEIGHT,
)

TITLE = "title"  # put first among default item text columns


def load_dataset(path: str | Path, config: DataConfig | None = None) -> Dataset:
    """Read, validate and index the data directory `path`; DataValidationError on bad input."""
    config = config or DataConfig()
    directory = Path(path)
    if not directory.is_dir():
        raise DataValidationError(f"{directory}: expected a data directory, found no directory")
    tables = validate_tables(read_tables(directory))
    item_text = select_text_columns(tables.items, ITEM_ID, config.item_text_columns)
    user_text = select_text_columns(tables.users, USER_ID, config.user_text_columns, directory)
    interactions = apply_options(tables.interactions, config)
    items = _indexed(tables.items.frame, ITEM_ID, ITEM_IDX, item_text)
    users = _users_table(tables.users, interactions, user_text)
    return Dataset(
        items=items,
        users=users,
        interactions=_canonical_interactions(interactions, items, users),
        item_map=IdMap(items[ITEM_ID].to_list()),
        user_map=IdMap(users[USER_ID].to_list()),
        item_text_columns=item_text,
        user_text_columns=user_text,
        source=f"{directory} ({tables.layout})",
    )


def read_tables(directory: Path) -> RawTables:
    """The raw tables of a directory: items/interactions/users files, or a MovieLens layout."""
    generic = find_table(directory, "interactions", required=False)
    layout = None if generic is not None else detect_movielens(directory)
    if layout is not None:
        return read_movielens(directory, layout)
    interactions = find_table(directory, "interactions", required=True)
    items = find_table(directory, "items", required=True)
    users = find_table(directory, "users", required=False)
    return RawTables(
        items=read_table_file(items),
        interactions=read_table_file(interactions),
        users=read_table_file(users) if users is not None else None,
        layout="csv/parquet",
    )


def select_text_columns(
    table: RawTable | None,
    id_column: str,
    requested: list[str] | None,
    directory: Path | None = None,
) -> list[str]:
    """Requested text columns (checked), or by default every string column, title first."""
    if table is None:
        if requested:
            raise DataValidationError(
                f"{directory}: user_text_columns = {requested} needs a users table "
                f"(users.csv or users.parquet), found none"
            )
        return []
    available = [c for c in table.frame.columns if c not in (id_column, SOURCE_ROW)]
    if requested is not None:
        unknown = [c for c in requested if c not in available]
        if unknown:
            raise DataValidationError(
                f"{table.path}: text column(s) {unknown} not found; available columns: "
                f"{', '.join(available) or '(none)'}"
            )
        nested = [c for c in requested if table.frame.schema[c].is_nested()]
        if nested:
            raise DataValidationError(
                f"{table.path}: text column(s) {nested}: expected text or numbers, found "
                f"{', '.join(str(table.frame.schema[c]) for c in nested)} (every row)"
            )
        return list(requested)
    text = [c for c in available if _is_text(table, c)]
    return sorted(text, key=lambda c: c != TITLE)  # stable: title first, others in file order


def _is_text(table: RawTable, column: str) -> bool:
    """Parquet: a string dtype. CSV (all read as text): some value is not a number."""
    if table.string_columns is not None:
        return column in table.string_columns
    values = table.frame[column].drop_nulls()
    return values.len() > 0 and values.cast(pl.Float64, strict=False).null_count() > 0


def _indexed(frame: pl.DataFrame, id_col: str, idx_col: str, text: list[str]) -> pl.DataFrame:
    """(idx == row number, id, text columns as Utf8 with '' for missing)."""
    columns = [pl.col(c).cast(pl.Utf8).fill_null("") for c in text]
    out = frame.select(pl.col(id_col).cast(pl.Utf8), *columns)
    return out.with_row_index(idx_col).with_columns(pl.col(idx_col).cast(pl.Int32))


def _users_table(
    users: RawTable | None, interactions: pl.DataFrame, text: list[str]
) -> pl.DataFrame:
    """Users table rows first, then users seen only in interactions, by first appearance."""
    profiles = users.frame if users is not None else pl.DataFrame({USER_ID: []}, {USER_ID: pl.Utf8})
    seen = (
        interactions.group_by(USER_ID)
        .agg(pl.col(SOURCE_ROW).min())
        .sort(SOURCE_ROW)
        .join(profiles.select(USER_ID), on=USER_ID, how="anti", maintain_order="left")
    )
    frame = pl.concat([profiles.select(USER_ID, *text), seen.select(USER_ID)], how="diagonal")
    return _indexed(frame, USER_ID, USER_IDX, text)


def _canonical_interactions(
    interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame
) -> pl.DataFrame:
    """USER_IDX, ITEM_IDX, TIMESTAMP, WEIGHT, ROW sorted by (USER_IDX, TIMESTAMP, ROW)."""
    if WEIGHT not in interactions.columns:
        interactions = interactions.with_columns(pl.lit(1.0).alias(WEIGHT))
    frame = (
        interactions.select(USER_ID, ITEM_ID, TIMESTAMP, WEIGHT, pl.col(SOURCE_ROW).alias(ROW))
        .join(users.select(USER_ID, USER_IDX), on=USER_ID, how="inner")
        .join(items.select(ITEM_ID, ITEM_IDX), on=ITEM_ID, how="inner")
    )
    frame = frame.select([pl.col(c).cast(t) for c, t in INTERACTION_DTYPES.items()])
    return frame.sort([USER_IDX, TIMESTAMP, ROW])
