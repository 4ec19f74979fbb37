"""Serving stage: one worker's view of the live store (reads recsys.live_store; writes nothing) —
hidden items, overlay items embedded for each served bundle, each user's events since the bundle.

Requests call `sync()`: at most every [live] poll_seconds it reads the store's change counters
(one indexed read) and fetches only the rows newer than what it has; a raised epoch (rows retired
by a published bundle) re-reads everything. Every worker of every host reads the same store, so
they all give the same answer within the poll interval.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from recsys.config import LiveConfig, TextConfig
from recsys.live_store import ItemRow, Store
from recsys.serving.metrics import Metrics

if TYPE_CHECKING:
    from recsys.ranking.overlay import Overlay

T = TypeVar("T")  # a value LiveView caches per bundle version


def events_through(model: Any, store: str | None = None) -> int:
    """The last live-event seq a bundle already contains (its manifest's live record); 0 when
    the record is of another store than `store` (an identity): its seqs are not this store's."""
    record = model.manifest.get("live") or {}
    if store is not None and record.get("store", store) != store:
        return 0
    return int(record.get("events_through", 0))


class UserEvents(NamedTuple):
    """A user's live events as a request applies them (shared between requests: read only)."""

    seq: int  # the last event's seq (0: none the bundle lacks)
    items: list[str]  # bundle item ids of the events the bundle lacks, oldest first
    idx: frozenset[int]  # their item_idx
    every: frozenset[str]  # the item of every live event of the user, overlay items included


NO_EVENTS = UserEvents(0, [], frozenset(), frozenset())


class LiveView:
    """What this worker applies from the live store; `sync()` keeps it current."""

    def __init__(self, store: Store, config: LiveConfig, text: TextConfig, metrics: Metrics):
        self.store, self.config, self.text, self.metrics = store, config, text, metrics
        self._lock = threading.Lock()
        self._identity: str | None = None
        self._checked = -math.inf
        self.changes, self.epoch = -1, -1
        self.items: dict[str, ItemRow] = {}
        self.hidden: frozenset[str] = frozenset()
        self.events: dict[str, list[tuple[int, str]]] = {}  # user -> [(seq, item_id)], oldest first
        self.event_seq = 0
        self.item_gen = 0  # raised whenever an item row changes: overlays are rebuilt
        self._overlays: dict[str, tuple[int, Overlay]] = {}  # bundle version -> (item_gen, overlay)
        self._vectors: dict[tuple[str, str, int], np.ndarray] = {}  # (version, item, seq) -> (dim,)
        self._patched: dict[str, tuple[int, dict]] = {}  # bundle version -> (item_gen, patched)
        self._ranked: OrderedDict[tuple[str, str], tuple[int, dict]] = OrderedDict()
        self._fresh: dict[str, tuple[str, int, UserEvents]] = {}  # user -> (version, n, answer)
        self._hidden: dict[str, tuple[int, tuple[list[str], frozenset[int]]]] = {}  # version ->

    # ---- following the store ----

    @property
    def identity(self) -> str:
        """The store's identity, read once (it never changes)."""
        if self._identity is None:
            self._identity = self.store.identity
        return self._identity

    def sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.config.poll_seconds:
            return
        with self._lock:
            self._checked = time.monotonic()
            changes, epoch = self.store.counters()
            if epoch != self.epoch:
                self._reset()
            elif changes == self.changes:
                return
            self._apply_items(self.store.items_since(max(self.changes, 0)))
            self._apply_events(self.store.events_since(self.event_seq))
            self.changes, self.epoch = changes, epoch
            self._report_size()

    def _reset(self) -> None:
        self.items, self.hidden, self.events = {}, frozenset(), {}
        self.changes, self.event_seq = -1, 0
        self.item_gen += 1
        self._ranked.clear()
        self._fresh.clear()

    def _apply_items(self, rows: list[ItemRow]) -> None:
        if not rows:
            return
        now = time.time()
        for row in rows:
            self.items[row.item_id] = row
            self.metrics.live_visible.labels(kind="item").observe(max(0.0, now - row.updated_at))
        self.hidden = frozenset(i for i, row in self.items.items() if row.hidden)
        self.items = {i: r for i, r in self.items.items() if r.hidden or r.fields is not None}
        self.item_gen += 1

    def _apply_events(self, events: list) -> None:
        now = time.time()
        for event in events:
            self.events.setdefault(event.user_id, []).append((event.seq, event.item_id))
            self.event_seq = max(self.event_seq, event.seq)
            self.metrics.live_visible.labels(kind="event").observe(
                max(0.0, now - event.ingested_at)
            )

    def _report_size(self) -> None:
        overlay = sum(1 for row in self.items.values() if row.fields is not None)
        self.metrics.live_size.labels(kind="overlay_items").set(overlay)
        self.metrics.live_size.labels(kind="hidden_items").set(len(self.hidden))
        self.metrics.live_size.labels(kind="events").set(sum(map(len, self.events.values())))

    # ---- what a request uses ----

    def user_events(self, model: Any, user_id: str | None) -> UserEvents:
        """The user's events the bundle does not contain yet and knows the item of (NO_EVENTS
        when none), worked out once per new event or bundle, not once per request."""
        events = self.events.get(user_id) if user_id is not None else None
        if not events:
            return NO_EVENTS
        n = len(events)  # events only grow between resets (which clear this cache)
        cached = self._fresh.get(user_id)
        if cached is not None and cached[:2] == (model.version, n):
            return cached[2]
        through = events_through(model, self.identity)
        fresh = [(seq, item) for seq, item in events[:n] if seq > through]
        items = [i for _, i in fresh if model.has_item(i)]
        answer = UserEvents(
            seq=fresh[-1][0] if fresh else 0,
            items=items,
            idx=frozenset(model.item_map.get_idx(i) for i in items),
            every=frozenset(item for _, item in events[:n]),
        )
        self._fresh[user_id] = (model.version, n, answer)
        return answer

    def _per_version(
        self,
        cache: dict[str, tuple[int, T]],
        version: str,
        compute: Callable[[], T],
        lock: bool = False,
    ) -> T:
        """cache[version] = (item_gen, value): the value until an item row changes, else
        compute() kept with the item_gen read before it (under the view's lock if `lock`)."""
        cached = cache.get(version)
        if cached is not None and cached[0] == self.item_gen:
            return cached[1]
        with self._lock if lock else contextlib.nullcontext():
            gen = self.item_gen
            value = compute()
            cache[version] = (gen, value)
            return value

    def hidden_in(self, model: Any) -> tuple[list[str], frozenset[int]]:
        """(ids, item_idx) of the hidden items the bundle contains, cached until an item row
        changes."""

        def compute() -> tuple[list[str], frozenset[int]]:
            ids = [h for h in self.hidden if model.has_item(h)]
            return ids, frozenset(model.item_map.get_idx(h) for h in ids)

        return self._per_version(self._hidden, model.version, compute)

    def overlay(self, model: Any) -> Overlay:
        """The overlay items the bundle does not contain, in its tower's space (items embedded
        by another bundle are embedded again, once per change)."""

        def compute() -> Overlay:
            from recsys.ranking.overlay import NoItemTower, Overlay  # model stack: the worker

            rows = [
                r
                for r in self.items.values()
                if r.fields is not None and not model.has_item(r.item_id)
            ]
            try:
                return self._build(model, rows) if rows else Overlay()
            except NoItemTower:  # a bundle that cannot embed text serves without the overlay
                return Overlay()

        return self._per_version(self._overlays, model.version, compute, lock=True)

    def _build(self, model: Any, rows: list[ItemRow]) -> Overlay:
        from recsys.ranking.overlay import Overlay, embed_items

        version = model.version
        missing = [
            r
            for r in rows
            if r.embedded_by != version and (version, r.item_id, r.seq) not in self._vectors
        ]
        if missing:
            ids = [r.item_id for r in missing]
            vectors = embed_items(model, [r.fields for r in missing], self.text, ids)
            for row, vector in zip(missing, vectors, strict=True):
                self._vectors[(model.version, row.item_id, row.seq)] = vector
        stacked = np.stack([self._vector(model, r) for r in rows]).astype(np.float32)  # (m, dim)
        current = {(version, r.item_id, r.seq) for r in rows}
        for key in [k for k in self._vectors if k[0] == version and k not in current]:
            del self._vectors[key]  # replaced or retired rows
        return Overlay([r.item_id for r in rows], stacked, [r.fields for r in rows])

    def _vector(self, model: Any, row: ItemRow) -> np.ndarray:
        if row.embedded_by == model.version and row.vector is not None:
            return row.vector
        return self._vectors[(model.version, row.item_id, row.seq)]

    def patched(self, model: Any) -> dict[str, dict[str, str | None]]:
        """Bundle items whose columns were patched or replaced live: item id -> the columns its
        filters read now (absent = empty), cached until an item row changes."""

        def compute() -> dict[str, dict[str, str | None]]:
            rows = list(self.items.values())
            return {
                r.item_id: r.fields
                for r in rows
                if r.fields is not None and model.has_item(r.item_id)
            }

        return self._per_version(self._patched, model.version, compute)

    def knows(self, model: Any, item_id: str) -> bool:
        """The item is in the bundle or is an overlay item (hidden or not)."""
        row = self.items.get(item_id)
        return model.has_item(item_id) or (row is not None and row.fields is not None)

    # ---- re-ranked lists of users with events, kept until their next event ----

    def ranked(self, version: str, user_id: str, seq: int) -> dict | None:
        hit = self._ranked.get((version, user_id))
        return hit[1] if hit is not None and hit[0] == seq else None

    def keep_ranked(self, version: str, user_id: str, seq: int, result: dict) -> None:
        if self.config.rerank_cache <= 0:
            return
        with self._lock:
            self._ranked[(version, user_id)] = (seq, result)
            self._ranked.move_to_end((version, user_id))
            while len(self._ranked) > self.config.rerank_cache:
                self._ranked.popitem(last=False)
