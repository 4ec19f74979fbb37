"""Ground module: the records of the live store (overlay item rows, user events) and the interface
every live store offers (recsys.live_store.LiveStore on SQLite, recsys.live_redis.RedisLiveStore on
Redis); no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ItemRow:
    item_id: str
    fields: dict[str, str | None] | None
    vector: np.ndarray | None  # (dim,) float32
    embedded_by: str | None
    hidden: bool
    seq: int
    updated_at: float
    retired: bool = False


@dataclass(frozen=True)
class Event:
    seq: int
    user_id: str
    item_id: str
    timestamp: int
    type: str | None
    weight: float
    ingested_at: float
    retired: bool = False


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Store(Protocol):
    """What a live store offers (LiveStore: SQLite; recsys.live_redis.RedisLiveStore: Redis)."""

    location: str

    @property
    def identity(self) -> str: ...
    def counters(self) -> tuple[int, int]: ...
    def items_since(self, seq: int = 0) -> list[ItemRow]: ...
    def item(self, item_id: str) -> ItemRow | None: ...
    def events_since(self, seq: int = 0, limit: int | None = None) -> list[Event]: ...
    def last_event_seq(self) -> int: ...
    def sizes(self) -> dict[str, int]: ...
    def upsert_item(
        self, item_id: str, fields: dict[str, str | None], vector: np.ndarray, embedded_by: str
    ) -> int: ...
    def set_fields(self, item_id: str, fields: dict[str, str | None]) -> int: ...
    def set_hidden(self, item_id: str, hidden: bool) -> int: ...
    def add_events(self, events: Sequence[dict]) -> tuple[int, int]: ...
    def retire(self, items: Iterable[tuple[str, int]], events_through: int) -> dict[str, int]: ...
    def close(self) -> None: ...
