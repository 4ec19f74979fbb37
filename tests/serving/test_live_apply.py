"""The lean answer path on a real bundle (the tiny-BERT nightly), a real SQLite live store and a
worker's LiveView: a plain known user's answer is their precomputed list with hidden and event
items filtered out (order kept), a new event or hide is applied on the next sync (the per-user
and per-bundle caches follow), the items carry every source, and the query-string cache of the
API is bounded and never turns a bad query into a good one."""

from __future__ import annotations

import random

import numpy as np
import pytest
from support import build_test_bundle

from recsys import bundle
from recsys.config import LiveConfig, TextConfig
from recsys.live_store import open_store
from recsys.ranking.model import RecommenderModel
from recsys.serving import api as api_module
from recsys.serving import live_apply
from recsys.serving.app import create_app, start_holder
from recsys.serving.live_view import LiveView
from recsys.serving.metrics import Metrics
from recsys.sources import SOURCES


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("apply") / "var"
    build_test_bundle(workdir)
    model = RecommenderModel.load(bundle.current_bundle(workdir), verify_files=False)
    store = open_store(workdir)
    view = LiveView(store, LiveConfig(poll_seconds=0.0), TextConfig(), Metrics())
    yield {"workdir": workdir, "model": model, "store": store, "view": view}
    store.close()


def _ids(answer: dict) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def _events(store, user: str, items: list[str]) -> None:
    rows = [{"user_id": user, "item_id": i, "timestamp": 1, "weight": 1.0} for i in items]
    store.add_events(rows)


def test_plain_known_user_is_the_stored_list_filtered_and_follows_each_change(world):
    model, store, view = world["model"], world["store"], world["view"]
    user = model.users.to_id(3)
    stored = _ids(model.recommend(user_id=user, k=model.topk.k))
    assert len(stored) > 20

    def answer() -> dict:
        view.sync(force=True)
        return live_apply.recommend(model, view, user_id=user, k=10)

    assert _ids(answer()) == stored[:10]
    _events(store, user, [stored[1], stored[4]])
    store.set_hidden(stored[2], True)
    first = answer()
    assert first["ranked"] == "precomputed"
    gone = {stored[1], stored[4], stored[2]}
    assert _ids(first) == [i for i in stored if i not in gone][:10]  # nothing reordered
    _events(store, user, [stored[0]])  # one more event: the user's cached events are stale
    assert _ids(answer()) == [i for i in stored if i not in gone | {stored[0]}][:10]
    store.set_hidden(stored[2], False)  # an item row changed: the hidden cache is stale
    assert _ids(answer()) == [i for i in stored if i not in {stored[0], stored[1], stored[4]}][:10]
    other = model.users.to_id(4)  # another user's answer loses the hidden item only
    store.set_hidden(stored[5], True)
    other_stored = _ids(model.recommend(user_id=other, k=model.topk.k))
    assert _ids(answer()) and stored[5] not in _ids(answer())
    view.sync(force=True)
    expected = [i for i in other_stored if i != stored[5]][:10]
    assert _ids(live_apply.recommend(model, view, user_id=other, k=10)) == expected
    store.set_hidden(stored[5], False)


@pytest.mark.parametrize("seed", range(20))
def test_stored_depth_reads_exactly_as_deep_as_filtering_needs(seed):
    rng = random.Random(seed)
    size, k = rng.randint(5, 60), rng.randint(1, 12)
    top = np.array(rng.sample(range(500), size) + [-1] * rng.randint(0, 5), dtype=np.int32)
    hidden = frozenset(rng.sample(top[:size].tolist(), rng.randint(0, size // 3)))
    events = frozenset(rng.sample(top[:size].tolist(), rng.randint(0, size // 3)))
    depth = live_apply._stored_depth(top, k, hidden, events)
    kept = [i for i in top[:depth].tolist() if i not in hidden | events]
    if depth < len(top):
        assert len(kept) == k  # deep enough, and no deeper: the item at depth is the k-th kept
        assert top[depth - 1] not in hidden | events
    else:
        assert len(kept) <= k  # the whole list, and filtering left no more than k


def test_answer_items_carry_every_source_as_a_finite_float_or_none(world):
    model = world["model"]
    user = model.users.to_id(0)
    precomputed = model.recommend(user_id=user, k=10)
    live = model.recommend(user_id=user, k=10, exclude=[_ids(precomputed)[0]], explain=True)
    for answer in (precomputed, live, model.recommend(profile_text="anything at all", k=10)):
        assert answer["items"]
        for item in answer["items"]:
            assert list(item["sources"]) == list(SOURCES)
            assert type(item["score"]) is float and np.isfinite(item["score"])
            for value in item["sources"].values():
                assert value is None or (type(value) is float and np.isfinite(value))
    assert all("because" in item for item in live["items"])
    assert all("because" not in item for item in precomputed["items"])
    idx = model.users.get_idx(user)
    assert [it["score"] for it in precomputed["items"]] == model.topk.score[idx, :10].tolist()
    # the live ranking of the same plain query gives the stored list (ranked by the same ranker)
    assert _ids(live)[:5] == _ids(precomputed)[1:6]


def test_query_string_cache_is_bounded_and_keeps_validating(world, monkeypatch):
    monkeypatch.setattr(api_module, "PARSED_MAX_ENTRIES", 4)
    monkeypatch.setattr(api_module, "_PARSED", {})
    app = create_app(workdir=world["workdir"])
    start_holder(app, load_now=True, watch=False)
    client = app.test_client()
    user = world["model"].users.to_id(1)
    for k in range(1, 11):
        response = client.get(f"/v1/users/{user}/recommendations?k={k}")
        assert response.status_code == 200 and len(response.get_json()["items"]) == k
        assert len(api_module._PARSED) <= 4
    again = client.get(f"/v1/users/{user}/recommendations?k=10")  # answered from the cache
    assert len(again.get_json()["items"]) == 10
    for bad in ("k=0", "k=ten", "k=1&k=2"):
        assert client.get(f"/v1/users/{user}/recommendations?{bad}").status_code == 422
        assert client.get(f"/v1/users/{user}/recommendations?{bad}").status_code == 422
    assert all(key[1] != b"k=0" for key in api_module._PARSED)  # errors are never cached


def test_rerank_on_events_ranks_once_per_event_then_filters_the_kept_list(world):
    model, store = world["model"], world["store"]
    view = LiveView(
        store, LiveConfig(poll_seconds=0.0, rerank_on_events=True), TextConfig(), Metrics()
    )
    user = model.users.to_id(7)
    stored = _ids(model.recommend(user_id=user, k=model.topk.k))
    _events(store, user, [stored[0], stored[3]])

    def answer() -> dict:
        view.sync(force=True)
        return live_apply.recommend(model, view, user_id=user, k=10)

    first, again = answer(), answer()
    assert (first["ranked"], again["ranked"]) == ("live", "cached")
    events = view.user_events(model, user).items
    ranked = model.recommend(user_id=user, item_ids=events, k=30)  # history + events as query
    expected = [i for i in _ids(ranked) if i not in view.hidden][:10]
    assert _ids(first) == _ids(again) == expected
    assert not {stored[0], stored[3]} & set(_ids(first))
    _events(store, user, [expected[0]])  # a new event: ranked again, without that item
    after = answer()
    assert after["ranked"] == "live" and expected[0] not in _ids(after)
