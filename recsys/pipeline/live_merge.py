"""Pipeline: the live store into the next nightly (reads recsys.live_store and a data directory;
writes contract data files) — `recsys live export` and `recsys nightly --live`.

An export holds items.csv (overlay items: item_id + their text columns), interactions.csv (events:
user_id, item_id, timestamp, weight, type) and live.json (what it contains: the last event seq and
each item's seq), so that once a published bundle contains them the store can retire exactly
those rows (LiveStore.retire) and keep anything that changed since.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data.errors import DataValidationError
from recsys.data.loaders import read_tables
from recsys.data.raw import SOURCE_ROW
from recsys.live_store import Store
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID, WEIGHT

RECORD = "live.json"
EVENT_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP, WEIGHT, "type")


def export_live(store: Store, out: Path) -> dict[str, Any]:
    """Write the store's overlay items and events as contract files into `out` (created); returns
    the record of what was exported (also written to out/live.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    events_through = store.last_event_seq()  # before reading: later events are not claimed
    items = [r for r in store.items_since(0) if r.fields is not None and not r.retired]
    columns = sorted({c for row in items for c in row.fields})
    pl.DataFrame(
        {ITEM_ID: [r.item_id for r in items]}
        | {c: [r.fields.get(c) for r in items] for c in columns},
        schema={ITEM_ID: pl.Utf8} | dict.fromkeys(columns, pl.Utf8),
    ).write_csv(out / "items.csv")
    events = [e for e in store.events_since(0) if e.seq <= events_through and not e.retired]
    pl.DataFrame(
        {
            USER_ID: [e.user_id for e in events],
            ITEM_ID: [e.item_id for e in events],
            TIMESTAMP: [e.timestamp for e in events],
            WEIGHT: [e.weight for e in events],
            "type": [e.type for e in events],
        },
        schema={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8, TIMESTAMP: pl.Int64, WEIGHT: pl.Float64}
        | {"type": pl.Utf8},
    ).write_csv(out / "interactions.csv")
    record = {
        "store": store.identity,  # the seqs below are this store's
        "events_through": events_through,
        "events": len(events),
        "items": [[r.item_id, r.seq] for r in items],
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def merge_live(data_dir: Path, export_dir: Path, out: Path) -> dict[str, Any]:
    """The data directory plus an export, as contract CSV files in `out` (replaced): overlay items
    replace the text of items with the same id and add new ones (only the catalog's columns
    are kept); events are appended to the interactions. Returns the export's record."""
    tables = read_tables(Path(data_dir))
    record = json.loads((Path(export_dir) / RECORD).read_text(encoding="utf-8"))
    items = _text_frame(tables.items.frame)
    live_items = pl.read_csv(Path(export_dir) / "items.csv", infer_schema=False)
    extra = [c for c in live_items.columns if c not in items.columns]
    live_items = live_items.drop(extra).pipe(_align, items.columns)
    items = pl.concat([items.filter(~pl.col(ITEM_ID).is_in(live_items[ITEM_ID])), live_items])
    interactions = _text_frame(tables.interactions.frame)
    events = pl.read_csv(Path(export_dir) / "interactions.csv", infer_schema=False)
    events = events.with_columns(pl.col(TIMESTAMP).pipe(_timestamps, interactions))
    if WEIGHT not in interactions.columns and events.height:
        interactions = interactions.with_columns(pl.lit("1.0").alias(WEIGHT))
    events = events.drop([c for c in events.columns if c not in interactions.columns])
    interactions = pl.concat([interactions, events.pipe(_align, interactions.columns)])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    items.write_csv(out / "items.csv")
    interactions.write_csv(out / "interactions.csv")
    if tables.users is not None:
        _text_frame(tables.users.frame).write_csv(out / "users.csv")
    return record


def _text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns as text, the source-row number dropped (CSV round trip)."""
    frame = frame.drop(SOURCE_ROW, strict=False)
    return frame.with_columns(pl.all().cast(pl.Utf8))


def _align(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """`columns` in order, missing ones null text."""
    missing = [pl.lit(None, dtype=pl.Utf8).alias(c) for c in columns if c not in frame.columns]
    return frame.with_columns(missing).select(columns).cast(pl.Utf8)


def _timestamps(column: pl.Expr, interactions: pl.DataFrame) -> pl.Expr:
    """Events' epoch seconds, written as ISO-8601 when the data's own timestamps are."""
    existing = interactions[TIMESTAMP].drop_nulls()
    if existing.is_empty() or existing.str.contains(r"^\s*-?\d+(\.\d+)?\s*$").all():
        return column
    if not existing.str.contains(r"^\d{4}-\d{2}-\d{2}").all():
        raise DataValidationError(
            f"interactions.{TIMESTAMP}: live events can be merged only into epoch-second or "
            f"ISO-8601 timestamps; found e.g. {existing[0]!r}"
        )
    epoch = column.cast(pl.Int64)
    return pl.from_epoch(epoch, time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
