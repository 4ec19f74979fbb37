"""Data stage: reads one raw CSV/parquet table into polars, ids as strings, rows numbered."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.data.errors import DataValidationError
from recsys.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, WEIGHT

# 1-based data-row number in the source file (header excluded); becomes schema.ROW later.
SOURCE_ROW = "__source_row"
ID_COLUMNS = (ITEM_ID, USER_ID)
# Types no canonical column can hold (besides nested ones: lists, arrays, structs).
_UNUSABLE = (pl.Duration, pl.Time, pl.Binary, pl.Object)
_EXPECTED_TYPES = {
    ITEM_ID: "ids as text or integers",
    USER_ID: "ids as text or integers",
    TIMESTAMP: "epoch seconds, ISO-8601 text or datetimes",
    WEIGHT: "numbers",
    RATING: "numbers",
}


@dataclass(frozen=True)
class RawTable:
    """One table as read from a file: canonical column names plus SOURCE_ROW."""

    frame: pl.DataFrame
    path: Path
    renamed: dict[str, str] = field(default_factory=dict)  # canonical name -> name in the file
    string_columns: tuple[str, ...] | None = None  # text-typed columns; None: infer from values

    def label(self, column: str) -> str:
        """How a column is called in messages: its name in the file."""
        return repr(self.renamed.get(column, column))

    def replace(self, **changes) -> RawTable:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RawTables:
    """The tables of one data directory, before validation."""

    items: RawTable
    interactions: RawTable
    users: RawTable | None
    layout: str  # "csv/parquet", "ml-100k", "ml-1m", "ml-latest"

    def replace(self, **changes) -> RawTables:
        return dataclasses.replace(self, **changes)


def read_table_file(path: Path, renamed: dict[str, str] | None = None) -> RawTable:
    """Read a CSV (all columns as text) or parquet file; `renamed` maps file names -> canonical."""
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path).with_row_index(SOURCE_ROW, offset=1)
        else:
            frame = pl.read_csv(
                path, infer_schema=False, row_index_name=SOURCE_ROW, row_index_offset=1
            )
    except pl.exceptions.NoDataError:
        raise DataValidationError(
            f"{path}: expected a header line naming the columns, found an empty file"
        ) from None
    except (pl.exceptions.ComputeError, OSError) as exc:
        if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
            raise DataValidationError(describe_bad_utf8(path)) from None
        if "more fields" in str(exc):
            raise DataValidationError(describe_ragged_row(path)) from None
        raise DataValidationError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from None
    renamed = renamed or {}
    frame = frame.rename({old: new for old, new in renamed.items() if old in frame.columns})
    check_column_types(frame, path)
    frame = frame.with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64),
        *[pl.col(c).cast(pl.Utf8) for c in ID_COLUMNS if c in frame.columns],
    )
    strings = None
    if path.suffix == ".parquet":
        strings = tuple(c for c, t in frame.schema.items() if t in (pl.Utf8, pl.Categorical))
    return RawTable(frame, path, {new: old for old, new in renamed.items()}, strings)


def check_column_types(frame: pl.DataFrame, path: Path) -> None:
    """Canonical columns of a parquet file must hold scalars the checks can read."""
    for column, expected in _EXPECTED_TYPES.items():
        dtype = frame.schema.get(column)
        if dtype is not None and (dtype.is_nested() or dtype in _UNUSABLE):
            raise DataValidationError(
                f"{path}: column {column!r}: expected {expected}, found values of type {dtype} "
                f"(every row, from data row 1)"
            )


def describe_bad_utf8(path: Path, separator: str = ",", header: bool = True) -> str:
    """Locate the first byte that is not UTF-8: data row, column, byte offset."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start, exc_end = exc.start, exc.end
    else:
        return f"{path}: not valid UTF-8 text"
    line_start = data.rfind(b"\n", 0, start) + 1
    line_no = data.count(b"\n", 0, start) + 1  # 1-based line in the file
    prefix = data[line_start:start].decode("latin-1")
    field_no = len(next(csv.reader([prefix], delimiter=separator), [""]))  # fields so far
    column = f"field {field_no}"
    if header and line_no > 1:
        names = data[: data.find(b"\n")].decode("utf-8", errors="replace").rstrip("\r")
        header_fields = next(csv.reader([names], delimiter=separator), [])
        if field_no <= len(header_fields):
            column = repr(header_fields[field_no - 1])
    where = f"data row {line_no - 1}" if header else f"data row {line_no}"
    if header and line_no == 1:
        where = "the header line"
    bad = data[start:exc_end]
    return (
        f"{path}: column {column}: expected UTF-8 text, found byte(s) {bad!r} that are not UTF-8 "
        f"at byte offset {start}, {where} (line {line_no}); re-save the file as UTF-8"
    )


def describe_ragged_row(path: Path, separator: str = ",") -> str:
    """Locate the first CSV record with more fields than the header."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=separator)
        header = next(reader, [])
        for row_no, record in enumerate(reader, start=1):
            if len(record) > len(header):
                return (
                    f"{path}: expected {len(header)} fields per row as in the header "
                    f"({', '.join(header)}), found {len(record)} in data row {row_no} "
                    f"(line {reader.line_num}): {separator.join(record)[:80]!r}"
                )
    return f"{path}: a row has more fields than the header ({', '.join(header)})"


def find_table(directory: Path, name: str, required: bool) -> Path | None:
    """`name`.csv or `name`.parquet in `directory`; None (or an error) when absent."""
    found = [directory / f"{name}{ext}" for ext in (".csv", ".parquet")]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise DataValidationError(
            f"{directory}: expected one {name} table, found both {found[0].name} and "
            f"{found[1].name}; keep one"
        )
    if not found and required:
        present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise DataValidationError(
            f"{directory}: missing required table '{name}': expected {name}.csv or "
            f"{name}.parquet (or a MovieLens directory); found files: "
            f"{', '.join(present) or '(none)'}"
        )
    return found[0] if found else None
