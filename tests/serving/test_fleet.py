"""The server directory workers agree through: generation, reports, dead workers, waiting."""

import json
import os

from recsys.serving.fleet import WORKERS, Fleet, prepare


def test_generation_and_reports(tmp_path):
    prepare(tmp_path)
    fleet = Fleet(tmp_path)
    assert fleet.generation() == 0
    before = fleet.signature()
    with fleet.admin_lock():
        assert fleet.bump() == 1
    assert fleet.generation() == 1 and fleet.signature() != before
    fleet.report({"generation": 1, "serving": {"CURRENT": "v1"}})
    assert fleet.workers()[os.getpid()]["serving"] == {"CURRENT": "v1"}
    states, behind = fleet.wait_for(1, timeout=1.0)
    assert behind == [] and list(states) == [os.getpid()]


def test_dead_workers_are_forgotten_and_laggards_named(tmp_path):
    prepare(tmp_path)
    fleet = Fleet(tmp_path)
    dead = tmp_path / WORKERS / "999999999.json"
    dead.write_text(json.dumps({"pid": 999999999, "generation": -1}))
    sibling = os.getppid()  # alive: stands for a worker that has not caught up
    report = {"pid": sibling, "generation": 0, "serving": {}}
    (tmp_path / WORKERS / f"{sibling}.json").write_text(json.dumps(report))
    fleet.report({"generation": 1, "serving": {}})
    states, behind = fleet.wait_for(1, timeout=0.2)
    assert behind == [sibling] and set(states) == {os.getpid(), sibling}
    assert not dead.exists()
    fleet.forget(sibling)
    assert fleet.wait_for(1, timeout=0.2)[1] == []


def test_alone_without_a_server_directory():
    fleet = Fleet(None)
    assert fleet.workers() == {}
    assert fleet.bump() == 1 and fleet.generation() == 1
    fleet.report({"generation": 1, "serving": {"CURRENT": "v"}})
    assert fleet.wait_for(1, timeout=0.1) == ({os.getpid(): fleet.workers()[os.getpid()]}, [])
