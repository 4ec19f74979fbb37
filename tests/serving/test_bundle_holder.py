"""Bundle holder on a real bundle, in process: verified load, swap of one reference (old snapshots
keep answering), refusals, no retry storm, rollback, variants sharing a loaded version."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from support import build_test_bundle

from recsys import bundle
from recsys.config import ServingConfig
from recsys.serving.app import create_app, start_holder
from recsys.serving.holder import BundleHolder
from recsys.serving.metrics import Metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real bundle, built once; each test copies the work directory."""
    workdir = tmp_path_factory.mktemp("holder") / "var"
    version = build_test_bundle(workdir)
    if bundle.read_pointer(workdir) != version:
        bundle.set_pointer(workdir, version)
    return workdir, version


@pytest.fixture
def workdir(built, tmp_path):
    source, _ = built
    target = tmp_path / "wd"
    shutil.copytree(source / "bundles", target / "bundles")
    shutil.copy(source / "CURRENT", target / "CURRENT")
    return target


def _clone(workdir, version: str, suffix: str) -> str:
    new = f"{version}-{suffix}"
    shutil.copytree(bundle.bundles_dir(workdir) / version, bundle.bundles_dir(workdir) / new)
    path = bundle.bundles_dir(workdir) / new / bundle.MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "version": new}))
    return new


def _failures(metrics: Metrics, variant: str = "CURRENT") -> float:
    return (
        metrics.registry.get_sample_value("recsys_bundle_load_failures_total", {"variant": variant})
        or 0.0
    )


def test_swap_replaces_one_reference_and_old_snapshots_keep_working(built, workdir):
    _, first = built
    holder = BundleHolder(workdir, ["CURRENT"], Metrics(), poll_seconds=0)
    holder.start(load_now=True, watch=False)
    old = holder.snapshot
    assert old.versions() == {"CURRENT": first}
    second = _clone(workdir, first, "b")
    bundle.set_pointer(workdir, second)
    report = holder.reload()
    assert report["CURRENT"] == {"version": second, "status": "loaded", "error": None}
    assert holder.snapshot is not old and holder.snapshot.versions() == {"CURRENT": second}
    # a request that grabbed `old` before the swap finishes on it
    assert old.served["CURRENT"].model.recommend(k=3)["items"]
    assert holder.reload()["CURRENT"]["status"] == "unchanged"


def test_refused_bundle_is_retried_only_once_its_files_change(built, workdir):
    _, first = built
    metrics = Metrics()
    holder = BundleHolder(workdir, ["CURRENT"], metrics, poll_seconds=0)
    holder.start(load_now=True, watch=False)
    before = holder.snapshot
    broken = _clone(workdir, first, "broken")
    victim = next(p for p in (bundle.bundles_dir(workdir) / broken).rglob("*.npz"))
    intact = victim.read_bytes()
    victim.write_bytes(intact[:-10])  # truncated: sha256 mismatch
    bundle.set_pointer(workdir, broken)
    report = holder.reload(force=False)
    assert report["CURRENT"]["status"] == "failed"
    assert "sha256 mismatch" in report["CURRENT"]["error"]
    assert holder.snapshot is before and _failures(metrics) == 1
    again = holder.reload(force=False)["CURRENT"]["error"]  # the watcher: no retry storm
    assert again.startswith("refused before, files unchanged since:") and "sha256" in again
    assert _failures(metrics) == 1
    holder.reload(force=True)  # an operator's explicit reload tries again
    assert _failures(metrics) == 2 and holder.snapshot is before
    victim.write_bytes(intact)  # repaired on disk: the watcher's next look loads it
    assert holder.reload(force=False)["CURRENT"]["status"] == "loaded"
    assert holder.snapshot.versions() == {"CURRENT": broken} and holder.problems == {}


def test_rollback_goes_back_to_the_previous_champion(built, workdir):
    _, first = built
    holder = BundleHolder(workdir, ["CURRENT"], Metrics(), poll_seconds=0)
    holder.start(load_now=True, watch=False)
    second = _clone(workdir, first, "b")
    bundle.set_pointer(workdir, second)
    holder.reload()
    target, report = holder.rollback()
    assert target == first and bundle.read_pointer(workdir) == first
    assert report["CURRENT"]["status"] == "loaded"
    assert holder.snapshot.versions() == {"CURRENT": first}


def test_variants_pinning_the_same_version_share_one_loaded_model(built, workdir):
    _, first = built
    holder = BundleHolder(workdir, ["CURRENT", first], Metrics(), poll_seconds=0)
    holder.start(load_now=True, watch=False)
    served = holder.snapshot.served
    assert served["CURRENT"].model is served[first].model


def test_a_variant_without_a_bundle_is_served_by_control_and_named_by_readyz(built, workdir):
    config = ServingConfig(variants={"CURRENT": 0.5, "CHALLENGER": 0.5}, poll_seconds=0)
    app = create_app(config, workdir=workdir)
    start_holder(app, load_now=True, watch=False)
    client = app.test_client()
    ready = client.get("/readyz").get_json()
    assert ready["variants"] == {"CURRENT": built[1]}
    assert ready["problems"]["CHALLENGER"]["status"] == "unavailable"
    assert "pointer CHALLENGER is not set" in ready["problems"]["CHALLENGER"]["error"]
    bundle.set_pointer(workdir, built[1], name="CHALLENGER")
    app.extensions["recsys"].holder.reload()
    ready = client.get("/readyz").get_json()
    assert ready["variants"] == {"CURRENT": built[1], "CHALLENGER": built[1]}
    assert ready["problems"] == {}


def test_control_without_a_bundle_is_not_ready_and_says_why(built, workdir):
    (workdir / "CURRENT").unlink()
    app = create_app(ServingConfig(poll_seconds=0), workdir=workdir)
    start_holder(app, load_now=True, watch=False)
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert "pointer CURRENT is not set" in ready.get_json()["detail"]


def test_watcher_thread_picks_up_a_new_pointer(built, workdir):
    _, first = built
    holder = BundleHolder(workdir, ["CURRENT"], Metrics(), poll_seconds=0.1)
    holder.start(watch=True)
    try:
        deadline = time.monotonic() + 60
        while not holder.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _clone(workdir, first, "b")
        bundle.set_pointer(workdir, second)
        while holder.snapshot.versions()["CURRENT"] != second and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.snapshot.versions() == {"CURRENT": second}
    finally:
        holder.stop()


def test_known_users_are_served_from_vectors_encoded_at_publish(built):
    """The nightly stores every user's tower vector; serving a known user equals encoding them
    afresh, and a request that adds a recent item is encoded afresh (not the stored vector)."""
    import numpy as np

    from recsys.data.loaders import load_dataset
    from recsys.ranking.base import Query
    from recsys.ranking.model import RecommenderModel
    from recsys.text.documents import profile_texts

    source, version = built
    model = RecommenderModel.load(source / "bundles" / version)
    text = model.ranker.sources["text"]
    assert text.known_user_keys is not None and len(text.known_user_keys) == len(model.users)
    profiles = profile_texts(load_dataset(source / "_data"))  # build_test_bundle's data
    assert any(profiles)
    queries = [Query(u, model.history(u).astype(np.int64)) for u in range(len(model.users))]
    fresh = text.user_encoder(
        [Query(q.user_idx, q.history, p) for q, p in zip(queries, profiles, strict=True)],
        text.item_vectors,
    )  # the stored vectors read the user's profile text too
    np.testing.assert_allclose(text.user_vectors(queries), fresh, atol=1e-5)
    user_id = model.users.to_id(0)
    seen = set(model.history(0).tolist())
    recent = model.item_map.to_id(next(i for i in range(len(model.item_map)) if i not in seen))
    query = model.query_for(user_id, [recent], None)[0]
    np.testing.assert_allclose(
        text.user_vectors([query]), text.user_encoder([query], text.item_vectors), atol=1e-5
    )
    extended = model.recommend(user_id=user_id, item_ids=[recent], k=5)
    assert recent not in [i["item_id"] for i in extended["items"]]


def test_plain_requests_of_known_users_come_from_the_top_k_ranked_at_publish(built):
    """Every known user's stored top-k equals what the live ranker answers for the same request;
    anything beyond a plain request (filters, exclusions, explain, k > K) is ranked live."""
    from recsys.ranking.model import RecommenderModel

    source, version = built
    cached = RecommenderModel.load(source / "bundles" / version)
    live = RecommenderModel.load(source / "bundles" / version)
    assert cached.topk is not None and cached.topk.k == 100
    live.topk = None
    for user_idx in range(len(cached.users)):
        user_id = cached.users.to_id(user_idx)
        a, b = cached.recommend(user_id=user_id, k=10), live.recommend(user_id=user_id, k=10)
        assert a["path"] == b["path"] and a["unknown_item_ids"] == b["unknown_item_ids"]
        assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
        for x, y in zip(a["items"], b["items"], strict=True):
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)
            for name, value in x["sources"].items():
                other = y["sources"][name]
                assert (value is None) == (other is None)
                assert value is None or value == pytest.approx(other, abs=1e-5)
    user_id = cached.users.to_id(0)
    first = cached.recommend(user_id=user_id, k=10)["items"][0]["item_id"]
    excluded = cached.recommend(user_id=user_id, k=10, exclude=[first])
    assert first not in [i["item_id"] for i in excluded["items"]]  # not the stored list
    assert "because" in cached.recommend(user_id=user_id, k=3, explain=True)["items"][0]
