"""Evaluation stage: the exposure log, read for the live A/B report. Reads the JSON lines the API
writes (one file per process or pod: a glob, several paths or the configured path, which stands
for all of its per-process files) and the interactions that followed; writes an exposure frame and
each exposure's outcome (slots shown, items engaged with inside the attribution window).

An exposure without a user id (`user_id: null`, an anonymous request) keeps a null user_id here,
so it can never be matched to an interaction or taken for a user; recsys.evaluation.live reports
those separately.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import polars as pl

from recsys.data.timestamps import parse_timestamps
from recsys.errors import UserError
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID

REQUIRED_KEYS = ("time", "user_id", "variant", "item_ids")
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GLOB_CHARS = re.compile(r"[*?\[]")


class ExposureLogError(UserError, ValueError):
    """An exposure log that cannot be read; the message names the file and the lines."""


def parse_window(text: str) -> int:
    """'7d' -> 604800 seconds; units s, m, h, d, w (none: seconds)."""
    match = _WINDOW.match(str(text))
    if not match:
        raise ValueError(f"window: expected a duration like 30m, 12h, 7d or 2w, found {text!r}")
    return int(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def exposure_files(patterns: str | Path | list[str | Path]) -> list[Path]:
    """The files behind each pattern, sorted, each once: a glob ('logs/exposure.*.jsonl'), a
    directory (its *.jsonl), a file, or the configured log path, which stands for the
    per-process files the API writes beside it (exposure.jsonl -> exposure.*.jsonl)."""
    found: dict[Path, None] = {}
    for pattern in patterns if isinstance(patterns, list) else [patterns]:
        matches = _expand(Path(pattern))
        if not matches:
            raise ExposureLogError(
                f"{pattern}: no exposure log found (expected a file, a directory of *.jsonl, a "
                f"glob, or a configured log path with per-process files {_siblings(Path(pattern))})"
            )
        found |= dict.fromkeys(matches)
    return list(found)


def _expand(path: Path) -> list[Path]:
    text = str(path)
    if _GLOB_CHARS.search(text):
        return sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
    if path.is_dir():
        return sorted(p for p in path.glob("*.jsonl") if p.is_file())
    own = [path] if path.is_file() else []
    siblings = (Path(p) for p in glob.glob(_siblings(path)))
    return own + sorted(p for p in siblings if p.is_file() and p != path)


def _siblings(path: Path) -> str:
    """The glob of the per-process files written for a configured log path."""
    return str(path.with_name(f"{path.stem}.*{path.suffix}"))


def read_exposures(paths: str | Path | list[str | Path]) -> pl.DataFrame:
    """Every exposure in the files behind `paths` (see exposure_files) as one frame: time (Int64
    epoch s), user_id (Utf8, null when anonymous), variant, bundle (Utf8), item_ids (List[Utf8],
    in display order: sorted by `positions` when given), file (Utf8), line (Int64)."""
    frames = [_read_file(path) for path in exposure_files(paths)]
    return pl.concat(frames).sort("time", "file", "line", maintain_order=True)


def _read_file(path: Path) -> pl.DataFrame:
    rows, errors = [], []
    with path.open(encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                rows.append(_parse_line(text, line_no))
            except ValueError as exc:
                errors.append(f"line {line_no}: {exc}")
    if errors:
        shown = "\n  ".join(errors[:5])
        raise ExposureLogError(
            f"{path}: {len(errors)} bad exposure line(s), first ones:\n  {shown}"
        )
    if not rows:
        raise ExposureLogError(f"{path}: no exposures; expected JSON lines with {REQUIRED_KEYS}")
    frame = pl.DataFrame(rows, schema=_SCHEMA)
    times = parse_timestamps(frame["time"])
    if times.null_count():
        bad = [
            f"line {r['line']}: {r['time']!r}"
            for r, t in zip(rows, times, strict=True)
            if t is None
        ]
        raise ExposureLogError(
            f"{path}: time must be epoch seconds or ISO-8601, found:\n  " + "\n  ".join(bad[:5])
        )
    return frame.with_columns(times.alias("time"), file=pl.lit(str(path)))


_SCHEMA = {
    "time": pl.Utf8,
    "user_id": pl.Utf8,
    "variant": pl.Utf8,
    "bundle": pl.Utf8,
    "item_ids": pl.List(pl.Utf8),
    "line": pl.Int64,
}


def _parse_line(text: str, line_no: int) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, found {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"missing key(s) {missing}; expected {list(REQUIRED_KEYS)}")
    items = record["item_ids"]
    if not isinstance(items, list) or any(isinstance(i, dict | list) for i in items):
        raise ValueError(f"item_ids: expected a list of ids, found {str(items)[:60]}")
    positions = record.get("positions")
    if positions is not None:
        if not isinstance(positions, list) or len(positions) != len(items):
            raise ValueError(f"positions: expected {len(items)} numbers like item_ids")
        items = [item for _, item in sorted(zip(positions, items, strict=True), key=lambda p: p[0])]
    time = record["time"]
    if isinstance(time, bool) or not isinstance(time, str | int | float):
        raise ValueError(f"time: expected epoch seconds or an ISO-8601 string, found {time!r}")
    user_id = record["user_id"]
    if isinstance(user_id, bool | dict | list):
        raise ValueError(f"user_id: expected a string, a number or null, found {user_id!r}")
    variant = record["variant"]
    if not isinstance(variant, str | int) or isinstance(variant, bool) or str(variant) == "":
        raise ValueError(f"variant: expected a variant name, found {variant!r}")
    return {
        "time": str(time),
        "user_id": None if user_id is None or user_id == "" else str(user_id),
        "variant": str(variant),
        "bundle": None if record.get("bundle") is None else str(record["bundle"]),
        "item_ids": [str(i) for i in items],
        "line": line_no,
    }


def outcomes(
    exposures: pl.DataFrame, interactions: pl.DataFrame, window_seconds: int, k: int
) -> pl.DataFrame:
    """Per exposure: slots (distinct top-k items shown) and engaged (those interacted with in
    [time, time + window]). Keeps the exposure columns."""
    _check_columns(interactions, (USER_ID, ITEM_ID, TIMESTAMP), "interactions")
    inter = interactions.select(
        pl.col(USER_ID).cast(pl.Utf8),
        pl.col(ITEM_ID).cast(pl.Utf8),
        parse_timestamps(interactions[TIMESTAMP]).alias("_ts"),
    )
    _check_columns(exposures, REQUIRED_KEYS, "exposures")
    exp = exposures.with_columns(
        parse_timestamps(exposures["time"]).alias("time"),
        pl.col("user_id", "variant").cast(pl.Utf8),
        pl.col("item_ids").cast(pl.List(pl.Utf8)),
    ).with_row_index("_exposure")
    shown = (
        exp.select("_exposure", "user_id", "time", pl.col("item_ids").list.head(k).alias(ITEM_ID))
        .explode(ITEM_ID)
        .drop_nulls(ITEM_ID)
        .unique(["_exposure", ITEM_ID])
    )
    engaged = (
        shown.join(inter, on=[USER_ID, ITEM_ID], how="inner")
        .filter(
            (pl.col("_ts") >= pl.col("time")) & (pl.col("_ts") <= pl.col("time") + window_seconds)
        )
        .group_by("_exposure")
        .agg(pl.col(ITEM_ID).n_unique().alias("engaged"))
    )
    slots = shown.group_by("_exposure").agg(pl.len().alias("slots"))
    return (
        exp.join(slots, on="_exposure", how="left")
        .join(engaged, on="_exposure", how="left")
        .with_columns(pl.col("slots").fill_null(0), pl.col("engaged").fill_null(0))
        .sort("_exposure")
        .drop("_exposure")
    )


def _check_columns(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; found {frame.columns}")
