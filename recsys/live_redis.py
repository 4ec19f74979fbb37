"""Ground module: the live store on Redis — overlay items, hidden flags and user events between
nightlies for several API hosts (reads/writes keys under one prefix of a Redis database); the same
interface and the same counters as the SQLite store (recsys.live_store.LiveStore).

Keys (P = the prefix, "recsys:live:" by default):
  P changes, P epoch      the change counter (raised by every write) and the retirement epoch
  P item:<id>             hash: fields (JSON), vector (float32 bytes), embedded_by, hidden, seq,
                          updated_at, retired — one row of LiveStore's items table
  P items                 sorted set: item id scored by its row's seq (rows newer than a seq)
  P retired_items         set: ids marked retired (cleared at the next retirement)
  P event_seq             the last event seq given
  P events                sorted set: one JSON event, scored by its seq
  P events_retired        events with seq <= this are retired (deleted at the next retirement)
  P store_id              a random id made with the store (identity)
Every write is one Lua script, so it is atomic and raises `changes` exactly once, as a SQLite
transaction does. Durability is the server's: run it with appendonly yes (appendfsync everysec or
always) for events to survive a Redis restart.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence

import numpy as np
import redis

from recsys.live_records import Event, ItemRow

DEFAULT_PREFIX = "recsys:live:"

# KEYS: changes, item hash, items zset. ARGV: prefix-free values. Returns the new change seq.
_UPSERT = """
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'fields', ARGV[1], 'vector', ARGV[2], 'embedded_by', ARGV[3],
           'seq', seq, 'updated_at', ARGV[4], 'retired', 0)
redis.call('HSETNX', KEYS[2], 'hidden', 0)
redis.call('SREM', KEYS[3] .. '_retired', ARGV[5])
redis.call('ZADD', KEYS[3], seq, ARGV[5])
return seq
"""
_FIELDS = """
local seq = redis.call('INCR', KEYS[1])
redis.call('HDEL', KEYS[2], 'vector', 'embedded_by')
redis.call('HSET', KEYS[2], 'fields', ARGV[1], 'seq', seq, 'updated_at', ARGV[2], 'retired', 0)
redis.call('HSETNX', KEYS[2], 'hidden', 0)
redis.call('SREM', KEYS[3] .. '_retired', ARGV[3])
redis.call('ZADD', KEYS[3], seq, ARGV[3])
return seq
"""
_HIDE = """
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'hidden', ARGV[1], 'seq', seq, 'updated_at', ARGV[2])
redis.call('HSETNX', KEYS[2], 'retired', 0)
redis.call('ZADD', KEYS[3], seq, ARGV[3])
return seq
"""
# KEYS: changes, event_seq, events zset. ARGV: ingested_at, then one JSON object per event.
_EVENTS = """
redis.call('INCR', KEYS[1])
local first = redis.call('INCRBY', KEYS[2], #ARGV - 1) - (#ARGV - 1) + 1
for n = 2, #ARGV do
  local event = cjson.decode(ARGV[n])
  event['seq'] = first + n - 2
  event['ingested_at'] = tonumber(ARGV[1])
  redis.call('ZADD', KEYS[3], event['seq'], cjson.encode(event))
end
return first
"""
# KEYS: changes, epoch, items zset, retired set, events zset, events_retired, item key prefix.
# ARGV: events_through, then item id / seq pairs. Returns {items marked, events marked}.
_RETIRE = """
redis.call('INCR', KEYS[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('HDEL', KEYS[7] .. id, 'fields', 'vector', 'embedded_by')
  redis.call('HSET', KEYS[7] .. id, 'retired', 0)
end
redis.call('DEL', KEYS[4])
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local row = redis.call('HMGET', KEYS[7] .. id, 'fields', 'hidden')
  if not row[1] and row[2] ~= '1' then
    redis.call('DEL', KEYS[7] .. id)
    redis.call('ZREM', KEYS[3], id)
  end
end
local old = tonumber(redis.call('GET', KEYS[6]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', old)
redis.call('INCR', KEYS[2])
local items = 0
for n = 2, #ARGV, 2 do
  local key = KEYS[7] .. ARGV[n]
  local row = redis.call('HMGET', key, 'seq', 'fields')
  if row[1] and row[2] and tonumber(row[1]) <= tonumber(ARGV[n + 1]) then
    redis.call('HSET', key, 'retired', 1)
    redis.call('SADD', KEYS[4], ARGV[n])
    items = items + 1
  end
end
local through = tonumber(ARGV[1])
redis.call('SET', KEYS[6], through)
return {items, redis.call('ZCOUNT', KEYS[5], '-inf', through)}
"""


class RedisLiveStore:
    """The live store in one Redis database (`url`: redis://host:port/db), keys under `prefix`.
    redis-py's connection pool is thread-safe and re-opens its connections after a fork."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX):
        self.location, self.prefix = url, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30)
        self._scripts = {
            name: self._redis.register_script(body)
            for name, body in (
                ("upsert", _UPSERT),
                ("fields", _FIELDS),
                ("hide", _HIDE),
                ("events", _EVENTS),
                ("retire", _RETIRE),
            )
        }

    def _key(self, name: str) -> str:
        return self.prefix + name

    # ---- reading ----

    @property
    def identity(self) -> str:
        """As LiveStore.identity: "redis:<random id made with the store>"."""
        key = self._key("store_id")
        self._redis.set(key, secrets.randbits(62), nx=True)
        return f"redis:{int(self._redis.get(key))}"

    def counters(self) -> tuple[int, int]:
        changes, epoch = self._redis.mget(self._key("changes"), self._key("epoch"))
        return int(changes or 0), int(epoch or 0)

    def items_since(self, seq: int = 0) -> list[ItemRow]:
        ids = self._redis.zrangebyscore(self._key("items"), f"({seq}", "+inf")
        return self._rows(ids)

    def item(self, item_id: str) -> ItemRow | None:
        rows = self._rows([item_id.encode()])
        return rows[0] if rows else None

    def _rows(self, ids: Sequence[bytes]) -> list[ItemRow]:
        pipe = self._redis.pipeline(transaction=False)
        for item_id in ids:
            pipe.hgetall(self._key("item:") + item_id.decode())
        rows = [_item(i.decode(), h) for i, h in zip(ids, pipe.execute(), strict=True) if h]
        return sorted(rows, key=lambda r: r.seq)

    def events_since(self, seq: int = 0, limit: int | None = None) -> list[Event]:
        args = {"start": 0, "num": limit} if limit else {}
        raw = self._redis.zrangebyscore(self._key("events"), f"({seq}", "+inf", **args)
        retired = int(self._redis.get(self._key("events_retired")) or 0)
        return [_event(json.loads(r), retired) for r in raw]

    def last_event_seq(self) -> int:
        return int(self._redis.get(self._key("event_seq")) or 0)

    def sizes(self) -> dict[str, int]:
        rows = self.items_since(0)
        retired = int(self._redis.get(self._key("events_retired")) or 0)
        return {
            "overlay_items": sum(r.fields is not None and not r.retired for r in rows),
            "hidden_items": sum(r.hidden for r in rows),
            "events": int(self._redis.zcount(self._key("events"), f"({retired}", "+inf")),
        }

    # ---- writing ----

    def upsert_item(
        self, item_id: str, fields: dict[str, str | None], vector: np.ndarray, embedded_by: str
    ) -> int:
        """Insert or replace an overlay item's text and vector (keeps its hidden flag)."""
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        keys = [self._key("changes"), self._key("item:") + item_id, self._key("items")]
        args = [json.dumps(fields, sort_keys=True), blob, embedded_by, time.time(), item_id]
        return int(self._scripts["upsert"](keys=keys, args=args))

    def set_fields(self, item_id: str, fields: dict[str, str | None]) -> int:
        """As LiveStore.set_fields: a bundle item's patched columns, no vector."""
        keys = [self._key("changes"), self._key("item:") + item_id, self._key("items")]
        args = [json.dumps(fields, sort_keys=True), time.time(), item_id]
        return int(self._scripts["fields"](keys=keys, args=args))

    def set_hidden(self, item_id: str, hidden: bool) -> int:
        keys = [self._key("changes"), self._key("item:") + item_id, self._key("items")]
        return int(self._scripts["hide"](keys=keys, args=[int(hidden), time.time(), item_id]))

    def add_events(self, events: Sequence[dict]) -> tuple[int, int]:
        """Store a batch atomically; returns the (first, last) event seq given to it."""
        rows = [
            json.dumps(
                {
                    "user_id": e["user_id"],
                    "item_id": e["item_id"],
                    "timestamp": int(e["timestamp"]),
                    "type": e.get("type"),
                    "weight": float(e["weight"]),
                }
            )
            for e in events
        ]  # every row built before anything is sent: a bad one stores nothing
        keys = [self._key("changes"), self._key("event_seq"), self._key("events")]
        first = int(self._scripts["events"](keys=keys, args=[time.time(), *rows]))
        return first, first + len(rows) - 1

    def retire(self, items: Iterable[tuple[str, int]], events_through: int) -> dict[str, int]:
        """As LiveStore.retire: mark what a new champion contains, delete what the previous
        call marked (raising the epoch)."""
        names = ("changes", "epoch", "items", "items_retired", "events", "events_retired")
        keys = [*(self._key(n) for n in names), self._key("item:")]
        pairs = [value for item_id, seq in items for value in (item_id, int(seq))]
        marked, events = self._scripts["retire"](keys=keys, args=[int(events_through), *pairs])
        return {"items": int(marked), "events": int(events)}

    def close(self) -> None:
        self._redis.close()


def _item(item_id: str, h: dict[bytes, bytes]) -> ItemRow:
    fields, vector = h.get(b"fields"), h.get(b"vector")
    embedded_by = h.get(b"embedded_by")
    return ItemRow(
        item_id=item_id,
        fields=None if fields is None else json.loads(fields),
        vector=None if vector is None else np.frombuffer(vector, dtype=np.float32).copy(),
        embedded_by=None if embedded_by is None else embedded_by.decode(),
        hidden=h.get(b"hidden") == b"1",
        seq=int(h[b"seq"]),
        updated_at=float(h[b"updated_at"]),
        retired=h.get(b"retired") == b"1",
    )


def _event(row: dict, retired_through: int) -> Event:
    return Event(
        seq=int(row["seq"]),
        user_id=row["user_id"],
        item_id=row["item_id"],
        timestamp=int(row["timestamp"]),
        type=row.get("type"),
        weight=float(row["weight"]),
        ingested_at=float(row["ingested_at"]),
        retired=int(row["seq"]) <= retired_through,
    )
