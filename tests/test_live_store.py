"""The live store and its way into the nightly: counters, atomic batches, retirement, several
processes writing at once, export and merge into a data directory — each against both backends,
SQLite (WAL) and a real redis-server ([live] store = "redis://...")."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid

import numpy as np
import polars as pl
import pytest
from support import small_sample

from recsys.config import DataConfig
from recsys.data.loaders import load_dataset
from recsys.live_redis import RedisLiveStore
from recsys.live_store import LiveStore, open_store
from recsys.pipeline.live_merge import export_live, merge_live
from recsys.schema import ITEM_ID


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """A fresh store of each backend (Redis: the session's server, keys under a new prefix)."""
    if request.param == "sqlite":
        store = open_store(tmp_path / "var")
    else:
        url = request.getfixturevalue("redis_url")
        store = open_store(tmp_path / "var", url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
    yield store
    store.close()


def _reopen(store):
    """Another connection to the same store (a restarted process, another host)."""
    if isinstance(store, RedisLiveStore):
        return RedisLiveStore(store.location, store.prefix)
    return LiveStore(store.path)


def _event(user="u1", item="i1", ts=1_700_000_000, weight=1.0):
    return {"user_id": user, "item_id": item, "timestamp": ts, "weight": weight, "type": None}


def test_writes_raise_the_counter_and_survive_a_new_connection(store, tmp_path):
    assert store.counters() == (0, 0)
    store.upsert_item("n1", {"title": "A"}, np.ones(4, np.float32), "v1")
    store.set_hidden("i9", True)
    first, last = store.add_events([_event(), _event(item="i2")])
    assert (first, last) == (1, 2)
    assert store.counters() == (3, 0)
    again = _reopen(store)  # a restarted process
    rows = {r.item_id: r for r in again.items_since(0)}
    assert rows["n1"].fields == {"title": "A"} and rows["n1"].vector.tolist() == [1.0] * 4
    assert rows["i9"].hidden and rows["i9"].fields is None
    assert [e.item_id for e in again.events_since(0)] == ["i1", "i2"]
    assert [r.item_id for r in again.items_since(1)] == ["i9"]  # only rows newer than seq 1
    assert again.item("n1").embedded_by == "v1" and again.item("nope") is None
    assert again.last_event_seq() == 2
    if isinstance(store, LiveStore):
        assert store.path == tmp_path / "var" / "live" / "live.db"
        mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_identity_is_made_once_and_differs_between_stores(store, tmp_path):
    assert store.identity == _reopen(store).identity
    assert store.identity.startswith(("sqlite:", "redis:"))
    assert store.identity != open_store(tmp_path / "other").identity


def test_a_failing_batch_stores_nothing(store):
    with pytest.raises(KeyError):
        store.add_events([_event(), {"user_id": "u1"}])  # the second has no item_id
    assert store.events_since(0) == [] and store.counters() == (0, 0)


def test_unhide_is_a_change_workers_see(store):
    store.set_hidden("i9", True)
    seen = store.counters()[0]
    store.set_hidden("i9", False)
    (row,) = store.items_since(seen)
    assert row.item_id == "i9" and not row.hidden


def test_patched_fields_replace_the_text_and_drop_the_vector_keeping_the_flag(store):
    store.upsert_item("i7", {"title": "A"}, np.ones(4, np.float32), "v1")
    store.set_hidden("i7", True)
    seen = store.counters()[0]
    seq = store.set_fields("i7", {"title": "A", "genre": "jazz"})
    (row,) = store.items_since(seen)
    assert row.seq == seq == seen + 1 and row.hidden
    assert row.fields == {"genre": "jazz", "title": "A"} and row.vector is None
    assert row.embedded_by is None and store.sizes()["overlay_items"] == 1


def test_retire_marks_then_deletes_one_champion_later_and_keeps_later_changes(store):
    store.upsert_item("n1", {"title": "A"}, np.ones(4, np.float32), "v1")
    store.upsert_item("n2", {"title": "B"}, np.ones(4, np.float32), "v1")
    store.add_events([_event(), _event(item="i2")])
    exported = {r.item_id: r.seq for r in store.items_since(0)}
    store.upsert_item("n2", {"title": "B2"}, np.ones(4, np.float32), "v1")  # after the export
    store.add_events([_event(item="i3")])
    counts = store.retire(exported.items(), events_through=2)
    assert counts == {"items": 1, "events": 2}
    assert store.sizes() == {"overlay_items": 1, "hidden_items": 0, "events": 1}
    assert len(store.events_since(0)) == 3  # still there for workers on the previous bundle
    assert store.counters()[1] == 1
    store.retire([], events_through=0)  # the next champion: the retired rows go
    assert [e.item_id for e in store.events_since(0)] == ["i3"]
    assert [r.item_id for r in store.items_since(0)] == ["n2"]


def _writer(location: str, prefix: str | None, user: str, n: int) -> None:
    store = RedisLiveStore(location, prefix) if prefix else LiveStore(location)
    for i in range(n):
        store.add_events([_event(user=user, item=f"i{i}")])


def test_processes_writing_at_once_lose_nothing(store):
    store.counters()  # create the schema first
    ctx = multiprocessing.get_context("spawn")
    where = (store.location, getattr(store, "prefix", None))
    procs = [ctx.Process(target=_writer, args=(*where, f"u{p}", 50)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = store.events_since(0)
    assert len(events) == 150 and [e.seq for e in events] == list(range(1, 151))
    assert store.counters()[0] == 150


def test_export_and_merge_give_a_valid_data_directory(store, tmp_path):
    data = small_sample(tmp_path / "data", n_users=30, n_items=40)
    base = load_dataset(data, DataConfig())
    store.upsert_item(
        "n1", {"title": "A new book", "description": "About gardens."}, np.ones(4), "v"
    )
    store.upsert_item("i00001", {"title": "Renamed"}, np.ones(4), "v")  # text of a known item
    store.add_events([_event(user="u0001", item="n1"), _event(user="new-user", item="i00002")])
    record = export_live(store, tmp_path / "export")
    assert record["store"] == store.identity
    assert record["events_through"] == 2 and sorted(i for i, _ in record["items"]) == [
        "i00001",
        "n1",
    ]
    merge_live(data, tmp_path / "export", tmp_path / "merged")
    merged = load_dataset(tmp_path / "merged", DataConfig())
    assert merged.n_items == base.n_items + 1 and merged.n_users == base.n_users + 1
    assert merged.interactions.height == base.interactions.height + 2
    items = merged.items.filter(pl.col(ITEM_ID).is_in(["i00001", "n1"]))
    assert sorted(items["title"].to_list()) == ["A new book", "Renamed"]
