"""Ground module: the live store — overlay items, hidden flags and user events between nightlies
(reads/writes <workdir>/live/live.db, SQLite in WAL mode, shared by every API worker of a host).

Every write transaction raises one change counter (`meta.changes`); an item row carries the counter
value of its last change (`seq`), an event its own increasing `seq`. A worker polls the counter
(one indexed read) and fetches only rows newer than what it has; `meta.epoch` rises when rows are
deleted (retired by a published bundle), and then a worker reads everything again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from recsys.live_records import REDIS_SCHEMES, Event, ItemRow, Store

__all__ = ["REDIS_SCHEMES", "Event", "ItemRow", "LiveStore", "Store", "open_store", "store_path"]

LIVE_DIR, DB_FILE = "live", "live.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('changes', 0), ('epoch', 0);
-- a random id made with the store: which store a bundle's live seqs are of
INSERT OR IGNORE INTO meta VALUES ('store_id', random() & 4611686018427387903);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    fields TEXT,            -- JSON object of text columns; NULL: a hide-only row of a bundle item
    vector BLOB,            -- float32 (dim,), embedded by the item tower of bundle `embedded_by`
    embedded_by TEXT,
    hidden INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL,   -- meta.changes at the row's last change
    updated_at REAL NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0  -- 1: a published champion contains its text
);
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,  -- epoch seconds, when it happened
    type TEXT,
    weight REAL NOT NULL,
    ingested_at REAL NOT NULL,   -- epoch seconds, when the store took it
    retired INTEGER NOT NULL DEFAULT 0  -- 1: a published champion contains it
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq);
"""


def store_path(workdir: str | Path, store: str = "sqlite") -> Path:
    """The database file: <workdir>/live/live.db for "sqlite", else the path given."""
    return Path(workdir) / LIVE_DIR / DB_FILE if store == "sqlite" else Path(store)


def open_store(workdir: str | Path, store: str = "sqlite", prefix: str | None = None) -> Store:
    """The configured live store ([live] store): a Redis URL (redis://host:port/db, several API
    hosts; keys under `prefix`) -> recsys.live_redis.RedisLiveStore, else the SQLite file of
    store_path -> LiveStore. Both have the same methods and counters."""
    if store.startswith(REDIS_SCHEMES):
        from recsys.live_redis import DEFAULT_PREFIX, RedisLiveStore  # redis only when used

        return RedisLiveStore(store, prefix or DEFAULT_PREFIX)
    return LiveStore(store_path(workdir, store))


class LiveStore:
    """One SQLite database; a connection per thread (and per process: gunicorn forks)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.location = str(self.path)  # where it is, as `recsys live status` prints it
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a 200 means on disk
            conn.execute("PRAGMA busy_timeout=30000")
            conn.executescript(_SCHEMA)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _write(self, work) -> int:
        """Run `work(conn, seq)` in one IMMEDIATE transaction that raises the change counter."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
            seq = conn.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0]
            work(conn, seq)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return seq

    # ---- reading ----

    @property
    def identity(self) -> str:
        """This store, for ever ("sqlite:<random id made with it>"): a bundle's live record
        names the store its event and item seqs are of (another store's seqs mean nothing)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        return f"sqlite:{row[0]}"

    def counters(self) -> tuple[int, int]:
        """(changes, epoch): a worker re-reads when either moved."""
        rows = dict(self._conn().execute("SELECT key, value FROM meta").fetchall())
        return int(rows["changes"]), int(rows["epoch"])

    def items_since(self, seq: int = 0) -> list[ItemRow]:
        sql = "SELECT * FROM items WHERE seq > ? ORDER BY seq"
        return [_item(row) for row in self._conn().execute(sql, (seq,))]

    def item(self, item_id: str) -> ItemRow | None:
        row = self._conn().execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else _item(row)

    def events_since(self, seq: int = 0, limit: int | None = None) -> list[Event]:
        sql = "SELECT * FROM events WHERE seq > ? ORDER BY seq" + (" LIMIT ?" if limit else "")
        args = (seq, limit) if limit else (seq,)
        return [Event(*row) for row in self._conn().execute(sql, args)]

    def last_event_seq(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def sizes(self) -> dict[str, int]:
        conn = self._conn()
        return {
            "overlay_items": conn.execute(
                "SELECT COUNT(*) FROM items WHERE fields IS NOT NULL AND NOT retired"
            ).fetchone()[0],
            "hidden_items": conn.execute("SELECT COUNT(*) FROM items WHERE hidden").fetchone()[0],
            "events": conn.execute("SELECT COUNT(*) FROM events WHERE NOT retired").fetchone()[0],
        }

    # ---- writing ----

    def upsert_item(
        self, item_id: str, fields: dict[str, str | None], vector: np.ndarray, embedded_by: str
    ) -> int:
        """Insert or replace an overlay item's text and vector (keeps its hidden flag)."""
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        text = json.dumps(fields, sort_keys=True)

        def work(conn, seq):
            conn.execute(
                "INSERT INTO items (item_id, fields, vector, embedded_by, hidden, seq, updated_at)"
                " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (item_id) DO UPDATE SET"
                " fields = excluded.fields, vector = excluded.vector,"
                " embedded_by = excluded.embedded_by, seq = excluded.seq,"
                " updated_at = excluded.updated_at, retired = 0",
                (item_id, text, blob, embedded_by, seq, time.time()),
            )

        return self._write(work)

    def set_fields(self, item_id: str, fields: dict[str, str | None]) -> int:
        """A bundle item's patched columns (PATCH /v1/items/{id}): its filter values until the
        next nightly reads them; no vector (the bundle's serves). Keeps its hidden flag."""
        text = json.dumps(fields, sort_keys=True)

        def work(conn, seq):
            conn.execute(
                "INSERT INTO items (item_id, fields, hidden, seq, updated_at)"
                " VALUES (?, ?, 0, ?, ?) ON CONFLICT (item_id) DO UPDATE SET"
                " fields = excluded.fields, vector = NULL,"
                " embedded_by = NULL, seq = excluded.seq, updated_at = excluded.updated_at,"
                " retired = 0",
                (item_id, text, seq, time.time()),
            )

        return self._write(work)

    def set_hidden(self, item_id: str, hidden: bool) -> int:
        """Hide or unhide (the row stays, so workers fetching changed rows see an unhide; rows
        left with neither text nor flag go at the next retire)."""

        def work(conn, seq):
            conn.execute(
                "INSERT INTO items (item_id, hidden, seq, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (item_id) DO UPDATE SET hidden = excluded.hidden,"
                " seq = excluded.seq, updated_at = excluded.updated_at",
                (item_id, int(hidden), seq, time.time()),
            )

        return self._write(work)

    def add_events(self, events: Sequence[dict]) -> tuple[int, int]:
        """Store a batch atomically; returns the (first, last) event seq given to it."""
        now = time.time()
        out: list[int] = []

        def work(conn, seq):
            for e in events:
                cur = conn.execute(
                    "INSERT INTO events (user_id, item_id, timestamp, type, weight, ingested_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        e["user_id"],
                        e["item_id"],
                        int(e["timestamp"]),
                        e.get("type"),
                        float(e["weight"]),
                        now,
                    ),
                )
                out.append(cur.lastrowid)

        self._write(work)
        return out[0], out[-1]

    def retire(self, items: Iterable[tuple[str, int]], events_through: int) -> dict[str, int]:
        """A new champion contains these rows: events with seq <= events_through, and each
        (item_id, seq) whose row has not changed since (a later upsert stays). They are marked
        retired (no longer exported or counted; a worker still on the previous bundle keeps
        applying them until it swaps), and the rows retired by the previous call are deleted
        (raising the epoch: workers re-read). A hidden item keeps its flag."""
        counts = {"items": 0, "events": 0}

        def work(conn, seq):
            conn.execute(
                "UPDATE items SET fields = NULL, vector = NULL, embedded_by = NULL, retired = 0"
                " WHERE retired"
            )
            conn.execute("DELETE FROM items WHERE fields IS NULL AND hidden = 0")
            conn.execute("DELETE FROM events WHERE retired")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'epoch'")
            for item_id, item_seq in items:
                cur = conn.execute(
                    "UPDATE items SET retired = 1"
                    " WHERE item_id = ? AND seq <= ? AND fields IS NOT NULL",
                    (item_id, item_seq),
                )
                counts["items"] += cur.rowcount
            cur = conn.execute("UPDATE events SET retired = 1 WHERE seq <= ?", (events_through,))
            counts["events"] = cur.rowcount

        self._write(work)
        return counts

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _item(row: tuple) -> ItemRow:
    item_id, fields, vector, embedded_by, hidden, seq, updated_at, retired = row
    return ItemRow(
        item_id=item_id,
        fields=None if fields is None else json.loads(fields),
        vector=None if vector is None else np.frombuffer(vector, dtype=np.float32).copy(),
        embedded_by=embedded_by,
        hidden=bool(hidden),
        seq=int(seq),
        updated_at=float(updated_at),
        retired=bool(retired),
    )
