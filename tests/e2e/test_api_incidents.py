"""End-to-end, the incident path (issue 17), gunicorn with 2 workers over real bundles: reload and
rollback reach every worker before they answer; rollbacks walk back through the champions; a
side channel on a full disk, an unloadable variant, a binary CURRENT or a refused-then-repaired
bundle leave the API serving."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
from test_api_helpers import ADMIN_TOKEN, admin, build_bundle, clone_bundle, metric, write_config

from recsys import bundle
from recsys.serving.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
WORKERS = 2
ENV = {"RECSYS_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Bundle A from the nightly on a sample, B, C, D its copies under other versions."""
    root = tmp_path_factory.mktemp("incidents")
    workdir = root / "var"
    first, _ = build_bundle(workdir)
    versions = {"A": first} | {n: clone_bundle(workdir, first, f"{first}-{n}") for n in "BCD"}
    return {"root": root, "workdir": workdir, "versions": versions}


def _fresh_bundles(url: str, n: int = 200) -> set[str]:
    """The bundle named by n consecutive requests, each on a new connection."""
    seen = set()
    for i in range(n):
        response = requests.get(
            f"{url}/v1/users/user-{i}/recommendations",
            params={"k": 5},
            headers={"Connection": "close"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        seen.add(response.json()["bundle"])
    return seen


def test_reload_and_rollback_reach_every_worker_before_answering(world):
    workdir, v = world["workdir"], world["versions"]
    bundle.set_pointer(workdir, v["A"], reason="test start")
    config = write_config(world["root"] / "switch.toml", poll_seconds=1.0)
    with live_server(workdir, config=config, workers=WORKERS, env=ENV) as server:
        for name in "BCD":
            bundle.set_pointer(workdir, v[name], reason="nightly gate")
            response = admin(server.url, "reload")
            assert response.status_code == 200, response.text
            assert response.json()["workers"] == WORKERS
            assert _fresh_bundles(server.url) == {v[name]}
        for name in "CBA":  # three rollbacks from A -> B -> C -> D
            response = admin(server.url, "rollback")
            assert response.status_code == 200, response.text
            assert response.json()["rolled_back_to"] == v[name]
            assert _fresh_bundles(server.url) == {v[name]}
        refused = admin(server.url, "rollback")  # nothing before A: says so, changes nothing
        assert refused.status_code == 409 and refused.json()["error"] == "rollback_refused"
        assert "nothing to roll back to" in refused.json()["detail"]
        ready = requests.get(server.url + "/readyz", timeout=30).json()
        assert len(ready["workers"]) == WORKERS
        assert all(s == {"CURRENT": v["A"]} for s in ready["workers"].values())
        assert _fresh_bundles(server.url, 50) == {v["A"]}


def test_side_channel_and_unloadable_variants_leave_control_serving(world):
    """Exposure log on /dev/full; CHALLENGER configured before one exists; a variant pinned to a
    version that is not (or no longer) published: every recommendation is 200 from control."""
    workdir, v = world["workdir"], world["versions"]
    bundle.set_pointer(workdir, v["A"], reason="test start")
    (workdir / "CHALLENGER").unlink(missing_ok=True)
    pruned = "20000101T000000Z-pruned00"
    variants = {"CURRENT": 0.34, "CHALLENGER": 0.33, pruned: 0.33}
    config = write_config(
        world["root"] / "side.toml", variants=variants, exposure_log="/dev/full", salt="s"
    )
    with live_server(workdir, config=config, workers=WORKERS, env=ENV) as server:
        answered = set()
        for i in range(120):
            response = requests.get(f"{server.url}/v1/users/u{i}/recommendations", timeout=30)
            assert response.status_code == 200, response.text
            answered.add((response.json()["variant"], response.json()["bundle"]))
        assert answered == {("CURRENT", v["A"])}
        ready = requests.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 200
        body = ready.json()
        assert body["variants"] == {"CURRENT": v["A"]}
        assert body["problems"]["CHALLENGER"]["status"] == "unavailable"
        assert body["problems"][pruned]["status"] == "unavailable"
        assert "not published" in body["problems"][pruned]["error"]
        assert metric(server.url, "recsys_side_channel_failures_total") >= 120
        assert metric(server.url, "recsys_variant_fallbacks_total", variant=pruned) > 0
        assert metric(server.url, "recsys_variant_fallbacks_total", variant="CHALLENGER") > 0
        assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200


def test_refused_bundle_is_reported_and_picked_up_once_repaired(world):
    workdir, v = world["workdir"], world["versions"]
    bundle.set_pointer(workdir, v["A"], reason="test start")
    broken = clone_bundle(workdir, v["A"], v["A"] + "-repaired")
    victim = max(
        (p for p in (bundle.bundles_dir(workdir) / broken).rglob("*.npz")),
        key=lambda p: p.stat().st_size,
    )
    intact = victim.read_bytes()
    victim.write_bytes(intact[: len(intact) // 2])
    config = write_config(world["root"] / "repair.toml", poll_seconds=0.5)
    with live_server(workdir, config=config, workers=WORKERS, env=ENV) as server:
        bundle.set_pointer(workdir, broken, reason="promoted while broken")  # no admin call
        body = _wait_ready(server.url, lambda b: "CURRENT" in b["problems"])
        assert body["variants"] == {"CURRENT": v["A"]}  # the old one keeps serving
        assert "sha256 mismatch" in body["problems"]["CURRENT"]["error"]
        victim.write_bytes(intact)  # repaired on disk, nobody touches the server
        body = _wait_ready(
            server.url,
            lambda b: (
                len(b["workers"]) == WORKERS
                and all(s == {"CURRENT": broken} for s in b["workers"].values())
            ),
        )
        assert _fresh_bundles(server.url, 50) == {broken}


def test_binary_current_is_a_409_not_a_500_and_rollback_version_repairs_it(world):
    workdir, v = world["workdir"], world["versions"]
    bundle.set_pointer(workdir, v["A"], reason="test start")
    config = write_config(world["root"] / "binary.toml", poll_seconds=0.5)
    with live_server(workdir, config=config, workers=WORKERS, env=ENV) as server:
        (workdir / "CURRENT").write_bytes(b"\xff\xfe\x00\x80garbage")
        response = admin(server.url, "reload")
        assert response.status_code == 409, response.text
        assert "expected one bundle version" in response.json()["detail"]
        assert _fresh_bundles(server.url, 20) == {v["A"]}
        cli = [sys.executable, "-m", "recsys.jobs.cli", "bundles", "rollback", v["B"]]
        repaired = subprocess.run([*cli, "--workdir", str(workdir)], capture_output=True, text=True)
        assert repaired.returncode == 0, repaired.stderr
        everywhere = {"CURRENT": v["B"]}
        _wait_ready(server.url, lambda b: all(s == everywhere for s in b["workers"].values()))
        assert _fresh_bundles(server.url, 20) == {v["B"]}


def test_poll_seconds_zero_with_several_workers_is_refused_at_start(world, tmp_path):
    config = write_config(tmp_path / "nopoll.toml", poll_seconds=0)
    with pytest.raises(RuntimeError, match="poll_seconds = 0 with 2 workers"):
        with live_server(world["workdir"], config=config, workers=2, timeout=60):
            pass
    cli = [
        sys.executable,
        "-m",
        "recsys.jobs.cli",
        "serve",
        "--workers",
        "2",
        "--config",
        str(config),
    ]
    refused = subprocess.run(
        [*cli, "--workdir", str(world["workdir"])], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "poll_seconds = 0 with --workers 2" in refused.stderr


def _wait_ready(url: str, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = requests.get(url + "/readyz", timeout=30)
        body = response.json()
        if response.status_code == 200 and condition(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never met the condition: {body}")


def test_recommend_with_an_absurd_k_is_a_one_line_error(world, tmp_path):
    out = tmp_path / "out.csv"
    cli = [sys.executable, "-m", "recsys.jobs.cli", "recommend", "--all", "--k", "1000000000000"]
    bundle.set_pointer(world["workdir"], world["versions"]["A"], reason="test start")
    proc = subprocess.run(
        [*cli, "--out", str(out), "--workdir", str(world["workdir"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--k 1000000000000: expected at most the bundle's 400 items" in proc.stderr
    assert not out.exists()
