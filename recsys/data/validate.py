"""Data stage: checks raw tables before anything is built; errors name file, column and rows."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from recsys.data.errors import DataValidationError
from recsys.data.raw import SOURCE_ROW, RawTable, RawTables
from recsys.data.timestamps import MAX_EPOCH_SECONDS, MIN_EPOCH_SECONDS, parse_timestamps
from recsys.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, WEIGHT

SHOW_ROWS = 5  # offending rows quoted in a message


def rows_error(
    table: RawTable, column: str, problem: str, bad: pl.DataFrame
) -> DataValidationError:
    """An error quoting the first offending rows of `bad` (columns SOURCE_ROW and `column`)."""
    shown = bad.sort(SOURCE_ROW).head(SHOW_ROWS)
    quoted = ", ".join(
        f"row {row} {value!r}" for row, value in zip(shown[SOURCE_ROW], shown[column], strict=True)
    )
    first = f"first {SHOW_ROWS}" if bad.height > SHOW_ROWS else "rows"
    return DataValidationError(
        f"{table.path}: column {table.label(column)}: {problem} in {bad.height} row(s); "
        f"{first} (1-based data rows): {quoted}"
    )


def require_columns(table: RawTable, required: Sequence[str]) -> None:
    missing = [name for name in required if name not in table.frame.columns]
    if missing:
        found = ", ".join(c for c in table.frame.columns if c != SOURCE_ROW) or "(none)"
        raise DataValidationError(
            f"{table.path}: missing required column(s) {', '.join(map(table.label, missing))}; "
            f"found columns: {found}"
        )


def require_rows(table: RawTable) -> None:
    if table.frame.height == 0:
        raise DataValidationError(f"{table.path}: expected at least one data row, found none")


def check_ids(table: RawTable, column: str, unique: bool) -> None:
    """Ids must be present (not null/empty) and, for catalog tables, unique."""
    frame = table.frame.select(SOURCE_ROW, column)
    ids = pl.col(column)
    missing = frame.filter(ids.is_null() | (ids.str.strip_chars() == ""))
    if missing.height:
        raise rows_error(table, column, "expected an id, found an empty value", missing)
    if unique:
        repeated = frame.filter(ids.is_duplicated())
        if repeated.height:
            raise rows_error(table, column, "expected unique ids, found repeated ids", repeated)


def check_known_items(interactions: RawTable, items: RawTable) -> None:
    unknown = interactions.frame.select(SOURCE_ROW, ITEM_ID).join(
        items.frame.select(ITEM_ID), on=ITEM_ID, how="anti"
    )
    if unknown.height:
        raise rows_error(
            interactions,
            ITEM_ID,
            f"expected item ids listed in {items.path}, found unknown ids",
            unknown,
        )


def checked_timestamps(table: RawTable) -> pl.Series:
    """The TIMESTAMP column as Int64 epoch seconds; error quoting unparseable values."""
    raw = table.frame[TIMESTAMP]
    parsed = parse_timestamps(raw)
    bad = table.frame.select(SOURCE_ROW, raw.cast(pl.Utf8, strict=False)).filter(parsed.is_null())
    if bad.height:
        raise rows_error(
            table,
            TIMESTAMP,
            "expected epoch seconds or ISO-8601 (e.g. 2021-03-01T12:00:00Z), found other values",
            bad,
        )
    outside = (parsed < MIN_EPOCH_SECONDS) | (parsed > MAX_EPOCH_SECONDS)
    bad = table.frame.select(SOURCE_ROW, raw.cast(pl.Utf8, strict=False)).filter(outside)
    if bad.height:
        raise rows_error(
            table,
            TIMESTAMP,
            f"expected epoch seconds within the years 1-9999 ({MIN_EPOCH_SECONDS} to "
            f"{MAX_EPOCH_SECONDS}; divide milliseconds by 1000), found values out of range",
            bad,
        )
    return parsed


def checked_numbers(table: RawTable, column: str, non_negative: bool) -> pl.Series:
    """A numeric column as Float64; error quoting non-numeric (or negative) values."""
    raw = table.frame[column]
    numbers = raw.cast(pl.Float64, strict=False)
    not_numeric = numbers.is_null() | numbers.is_nan() | numbers.is_infinite()
    bad = table.frame.select(SOURCE_ROW, raw.cast(pl.Utf8)).filter(not_numeric)
    if bad.height:
        raise rows_error(table, column, "expected a finite number, found other values", bad)
    if non_negative:
        negative = table.frame.select(SOURCE_ROW, raw.cast(pl.Utf8)).filter(numbers < 0)
        if negative.height:
            raise rows_error(table, column, "expected a number >= 0, found negative", negative)
    return numbers


def validate_tables(tables: RawTables) -> RawTables:
    """Check every table; return them with interaction TIMESTAMP/WEIGHT/RATING typed."""
    items, interactions, users = tables.items, tables.interactions, tables.users
    require_columns(items, [ITEM_ID])
    require_rows(items)
    check_ids(items, ITEM_ID, unique=True)
    if users is not None:
        require_columns(users, [USER_ID])
        require_rows(users)
        check_ids(users, USER_ID, unique=True)
    require_columns(interactions, [USER_ID, ITEM_ID, TIMESTAMP])
    require_rows(interactions)
    check_ids(interactions, USER_ID, unique=False)
    check_ids(interactions, ITEM_ID, unique=False)
    typed = [checked_timestamps(interactions).alias(TIMESTAMP)]
    if WEIGHT in interactions.frame.columns:
        typed.append(checked_numbers(interactions, WEIGHT, non_negative=True).alias(WEIGHT))
    if RATING in interactions.frame.columns:
        typed.append(checked_numbers(interactions, RATING, non_negative=False).alias(RATING))
    check_known_items(interactions, items)
    frame = interactions.frame.with_columns(typed)
    return tables.replace(interactions=interactions.replace(frame=frame))
