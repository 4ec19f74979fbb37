"""End-to-end: gunicorn (2 workers, the checked-in config) on a loopback port over a real bundle
with two A/B variants; every endpoint called over HTTP with `requests`."""

from __future__ import annotations

import json
import time

import polars as pl
import pytest
import requests
import schemathesis
from test_api_helpers import ADMIN_TOKEN, admin, build_bundle, clone_bundle, metric, write_config

from recsys import bundle
from recsys.schema import ITEM_ID, USER_ID
from recsys.serving.live import live_server
from recsys.serving.routing import VariantRouter
from recsys.sources import SOURCES

pytestmark = [pytest.mark.slow, pytest.mark.integration]
VARIANTS = {"CURRENT": 0.5, "CHALLENGER": 0.5}
SALT = "e2e-salt"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    workdir = root / "var"
    version, data = build_bundle(workdir)
    challenger = clone_bundle(workdir, version, version + "-b")
    bundle.set_pointer(workdir, challenger, name="CHALLENGER")
    exposure = root / "exposure.jsonl"
    config = write_config(
        root / "serving.toml",
        variants=VARIANTS,
        salt=SALT,
        exposure_log=exposure,
        poll_seconds=1.0,
        max_k=50,
        max_body_bytes=8192,
    )
    interactions = pl.read_csv(data / "interactions.csv", schema_overrides={USER_ID: pl.Utf8})
    items = pl.read_csv(data / "items.csv", schema_overrides={ITEM_ID: pl.Utf8})
    env = {"RECSYS_ADMIN_TOKEN": ADMIN_TOKEN, "RECSYS_LOG_FORMAT": "json", "RECSYS_ACCESS_LOG": "-"}
    with live_server(workdir, config=config, workers=2, env=env) as server:
        yield {
            "server": server,
            "url": server.url,
            "versions": {"CURRENT": version, "CHALLENGER": challenger},
            "exposure": exposure,
            "interactions": interactions,
            "items": items,
        }


def _get(world, path, **params):
    return requests.get(world["url"] + path, params=params, timeout=30)


def _known_user(world) -> tuple[str, set[str]]:
    counts = world["interactions"].group_by(USER_ID).len().sort(["len", USER_ID])
    user = counts[USER_ID][-1]  # the most active user
    seen = set(world["interactions"].filter(pl.col(USER_ID) == user)[ITEM_ID].to_list())
    return user, seen


def test_health_readiness_metrics_and_openapi(world):
    assert _get(world, "/healthz").json() == {"status": "ok"}
    ready = _get(world, "/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["variants"], body["problems"]) == ("ready", world["versions"], {})
    assert list(body["workers"].values()) == [world["versions"]] * 2  # both workers, the same
    doc = _get(world, "/openapi.json").json()
    schemathesis.openapi.from_dict(doc).validate()
    assert "/admin/reload" in doc["paths"]  # a token is configured
    for variant, version in world["versions"].items():
        assert metric(world["url"], "recsys_bundle_info", variant=variant, version=version) == 1


def test_known_user_gets_ranked_unseen_items_and_names_bundle_and_variant(world):
    user, seen = _known_user(world)
    response = _get(world, f"/v1/users/{user}/recommendations", k=7, explain="true")
    assert response.status_code == 200
    body = response.json()
    variant = VariantRouter(VARIANTS, SALT).assign(user)
    assert (body["variant"], body["bundle"]) == (variant, world["versions"][variant])
    assert (body["user_id"], body["path"], body["cold_start"], body["k"]) == (
        user,
        "known",
        False,
        7,
    )
    ids = [it["item_id"] for it in body["items"]]
    assert len(ids) == 7 and len(set(ids)) == 7 and not set(ids) & seen
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in body["items"]:
        assert set(item["sources"]) == set(SOURCES)  # every registered source, null if unused
        assert item["because"] is None or item["because"] in seen  # explained by the history
    assert any(item["because"] is not None for item in body["items"])
    assert "rank;dur=" in response.headers["Server-Timing"]


def test_exclude_and_filter(world):
    user, _ = _known_user(world)
    first = _get(world, f"/v1/users/{user}/recommendations", k=5).json()
    top = first["items"][0]["item_id"]
    again = _get(world, f"/v1/users/{user}/recommendations", k=5, exclude=[top, "no-such-item"])
    assert again.status_code == 200
    assert top not in [it["item_id"] for it in again.json()["items"]]
    category = world["items"]["categories"][0].split("|")[0]
    wanted = f"categories:{category.upper()}"  # case-insensitive containment
    filtered = _get(world, f"/v1/users/{user}/recommendations", k=5, filter=wanted).json()
    by_id = dict(zip(world["items"][ITEM_ID], world["items"]["categories"], strict=True))
    assert filtered["items"]
    assert all(category.lower() in by_id[it["item_id"]].lower() for it in filtered["items"])
    bad = _get(world, f"/v1/users/{user}/recommendations", filter="colour:red")
    assert bad.status_code == 422 and "unknown filter field" in bad.json()["detail"]


def test_unknown_user_takes_the_cold_start_path(world):
    body = _get(world, "/v1/users/never-seen-42/recommendations", k=5).json()
    assert body["cold_start"] is True and body["path"] != "known"
    assert len(body["items"]) == 5


def test_anonymous_recommendations_from_items_and_profile_text(world):
    items = world["items"][ITEM_ID].to_list()
    url = world["url"] + "/v1/recommendations"
    from_items = requests.post(url, json={"item_ids": items[:3] + ["ghost"], "k": 4}, timeout=30)
    assert from_items.status_code == 200
    body = from_items.json()
    assert body["path"] == "history" and body["cold_start"] is True
    assert body["unknown_item_ids"] == ["ghost"]
    assert not {it["item_id"] for it in body["items"]} & set(items[:3])
    text = world["items"]["title"][5]
    from_text = requests.post(url, json={"profile_text": text, "k": 4, "user_id": "s1"}, timeout=30)
    assert from_text.json()["path"] == "profile"
    assert from_text.json()["variant"] == VariantRouter(VARIANTS, SALT).assign("s1")


def test_similar_items_and_unknown_item_404(world):
    item = world["items"][ITEM_ID][0]
    body = _get(world, f"/v1/items/{item}/similar", k=6).json()
    assert body["item_id"] == item and len(body["items"]) == 6
    assert item not in [it["item_id"] for it in body["items"]]
    missing = _get(world, "/v1/items/no-such-item/similar")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_item"


def test_bad_input_over_http(world):
    url = world["url"]
    big = requests.post(
        url + "/v1/recommendations",
        data=json.dumps({"profile_text": "x" * 9000}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413 and big.json()["error"] == "request_entity_too_large"
    for k in (0, 51, "many"):
        assert _get(world, "/v1/users/u1/recommendations", k=k).status_code == 422
    unknown = requests.post(url + "/v1/recommendations", json={"k": 3, "colour": 1}, timeout=30)
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    wrong = requests.post(url + "/v1/recommendations", json={"item_ids": "i1"}, timeout=30)
    assert wrong.status_code == 422
    assert admin(url, "reload", token="nope").status_code == 401
    assert requests.post(url + "/admin/reload", timeout=30).status_code == 401


def test_admin_reload_without_changes_and_exposure_log(world):
    report = admin(world["url"], "reload")
    assert report.status_code == 200
    assert {v["status"] for v in report.json()["variants"].values()} == {"unchanged"}
    files = sorted(world["exposure"].parent.glob("exposure.*.jsonl"))  # one per worker process
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert lines, "no exposure written"
    keys = {"time", "user_id", "variant", "bundle", "item_ids", "scores", "positions"}
    assert all(set(r) == keys for r in lines)
    assert all(r["bundle"] == world["versions"][r["variant"]] for r in lines)
    assert all(r["positions"] == list(range(1, len(r["item_ids"]) + 1)) for r in lines)


def test_metrics_are_merged_over_workers(world):
    def served() -> float:
        route = "/v1/users/<user_id>/recommendations"
        name = "recsys_http_request_duration_seconds_count"
        return sum(metric(world["url"], name, route=route, variant=v) for v in VARIANTS)

    before = served()
    for i in range(6):  # new connections: both workers answer some of them
        assert _get(world, f"/v1/users/m{i}/recommendations", k=2).status_code == 200
    assert served() - before == 6


def test_request_id_is_echoed_and_logs_are_json_lines(world):
    given = _get_with_id(world, "/v1/users/u1/recommendations", "e2e-request-7")
    assert given.headers["X-Request-ID"] == "e2e-request-7"
    made = requests.get(world["url"] + "/healthz", timeout=30).headers["X-Request-ID"]
    assert len(made) == 32 and made != "e2e-request-7"  # none given: one is made
    bad = _get_with_id(world, "/healthz", "no spaces allowed")  # unusable: replaced
    assert bad.headers["X-Request-ID"] != "no spaces allowed"
    deadline = time.monotonic() + 10
    while "e2e-request-7" not in world["server"].log_tail(10**7) and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [x for x in world["server"].log_tail(10**7).splitlines() if x.strip()]
    records = [json.loads(line) for line in lines]  # every line the server wrote is JSON
    assert {"ts", "level", "logger", "message", "pid"} <= set(records[0])
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert any("request_id=e2e-request-7" in r["message"] for r in access)
    assert any(r["logger"] == "recsys.serving" for r in records)  # the app's own loggers too


def _get_with_id(world, path, request_id):
    return requests.get(world["url"] + path, headers={"X-Request-ID": request_id}, timeout=30)


def test_answers_are_counted_by_path_and_by_precomputed_or_live(world):
    user, _ = _known_user(world)
    variant = _get(world, f"/v1/users/{user}/recommendations", k=3).json()["variant"]

    def answers(path, ranked):
        return metric(world["url"], "recsys_recommendations_total", path=path, ranked=ranked)

    before = {key: answers(*key) for key in [("known", "precomputed"), ("known", "live")]}
    profile_before = answers("profile", "live")
    for _ in range(3):
        _get(world, f"/v1/users/{user}/recommendations", k=3)  # plain: precomputed top-k
    _get(world, f"/v1/users/{user}/recommendations", k=3, explain="true")  # explain: live
    url = world["url"] + "/v1/recommendations"
    requests.post(url, json={"profile_text": "anything at all", "k": 3}, timeout=30)
    assert answers("known", "precomputed") - before[("known", "precomputed")] == 3
    assert answers("known", "live") - before[("known", "live")] == 1
    assert answers("profile", "live") - profile_before == 1
    assert metric(world["url"], "recsys_recommendations_total", variant=variant) > 0


def test_bundle_age_and_build_info(world):
    text = requests.get(world["url"] + "/metrics", timeout=10).text
    for variant, version in world["versions"].items():
        age = metric(world["url"], "recsys_bundle_age_seconds", variant=variant, version=version)
        assert 0 < age < 3600
    from recsys import __version__

    assert metric(world["url"], "recsys_build_info", version=__version__) == 1
    assert "recsys_build_info{" in text and 'torch="' in text
