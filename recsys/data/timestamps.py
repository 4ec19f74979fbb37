"""Data stage: turns raw timestamp values (epoch seconds or ISO-8601) into int64 epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

_EPOCH_PATTERN = r"^[+-]?\d+(\.\d*)?$"
# Epoch seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what a calendar date can hold.
# Epoch milliseconds of any date after 1973 fall beyond the upper end.
MIN_EPOCH_SECONDS = -62_135_596_800
MAX_EPOCH_SECONDS = 253_402_300_799

# ISO-8601 shapes we accept; naive date-times are read as UTC.
_ISO_FORMATS: list[tuple[str, bool]] = [
    (f"%Y-%m-%d{sep}%H:%M{secs}{zone}", bool(zone))
    for sep in ("T", " ")
    for secs in (":%S%.f", "")
    for zone in ("%z", "")
] + [("%Y-%m-%d", False)]


def parse_timestamps(values: pl.Series) -> pl.Series:
    """Epoch seconds (Int64) for each value; null where the value is missing or unparseable.

    Accepts integer/float epoch seconds (floats are floored), polars Datetime/Date columns, and
    strings holding either epoch seconds or ISO-8601 (with 'T' or ' ', optional fraction and zone).
    """
    dtype = values.dtype
    if dtype.is_integer():
        return values.cast(pl.Int64)
    if dtype.is_float():
        frame = values.to_frame("v")
        floored = pl.when(pl.col("v").is_finite()).then(pl.col("v").floor().cast(pl.Int64))
        return frame.select(floored.alias(values.name)).to_series()
    if dtype == pl.Date:
        return values.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        return values.dt.epoch("s").cast(pl.Int64)
    if dtype not in (pl.Utf8, pl.Categorical):
        return pl.Series(values.name, [None] * len(values), dtype=pl.Int64)
    return _parse_strings(values.cast(pl.Utf8))


def _parse_strings(values: pl.Series) -> pl.Series:
    text = values.str.strip_chars()
    is_epoch = text.str.contains(_EPOCH_PATTERN).fill_null(False)
    as_int = text.cast(pl.Float64, strict=False).floor().cast(pl.Int64, strict=False)
    epoch = as_int.zip_with(is_epoch, pl.Series([None] * len(text), dtype=pl.Int64))
    todo = (~is_epoch & text.is_not_null()).arg_true()  # only these need the ISO formats
    if todo.len() == 0:
        return epoch.alias(values.name)
    iso_text = text.gather(todo).str.replace(r"Z$", "+00:00")
    parsed = []
    for fmt, has_zone in _ISO_FORMATS:
        as_dt = iso_text.str.to_datetime(
            fmt, strict=False, time_unit="us", time_zone="UTC" if has_zone else None
        )
        parsed.append(as_dt.dt.epoch("s").cast(pl.Int64))
    frame = pl.DataFrame({f"p{i}": p for i, p in enumerate(parsed)})
    iso = frame.select(pl.coalesce(frame.columns)).to_series()
    return epoch.scatter(todo, iso).alias(values.name)


def parse_time(value: str | int | float) -> int:
    """One timestamp (epoch seconds or ISO-8601) as epoch seconds; ValueError when unparseable."""
    parsed = parse_timestamps(pl.Series("time", [value]))[0]
    if parsed is None:
        raise ValueError(
            f"expected a timestamp as epoch seconds or ISO-8601 (e.g. 2021-03-01T00:00:00Z), "
            f"found {value!r}"
        )
    return int(parsed)


def format_time(epoch_seconds: int) -> str:
    """ISO-8601 UTC text for epoch seconds, e.g. '2021-03-01T00:00:00Z'."""
    moment = datetime.fromtimestamp(int(epoch_seconds), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
