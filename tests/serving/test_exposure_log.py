"""Exposure log: the JSON-lines schema `recsys ab-report` reads; one file per process (replicas
never share a file), and threads never mix lines."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from recsys.serving.exposure import ExposureLog, process_path


def test_one_line_per_list_with_the_documented_schema(tmp_path):
    path = tmp_path / "logs" / "exposure.jsonl"
    log = ExposureLog(path)
    before = time.time()
    log.write(user_id="u1", variant="CURRENT", bundle="v1", item_ids=["a", "b"], scores=[2.0, 1])
    log.write(user_id=None, variant="CHALLENGER", bundle="v2", item_ids=[], scores=[])
    log.close()
    assert not path.exists()  # the configured path names this process's file, beside it
    mine = process_path(path)
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname())  # a pod's name, dots replaced
    assert mine == path.parent / f"exposure.{host}.{os.getpid()}.jsonl"
    first, second = [json.loads(line) for line in mine.read_text().splitlines()]
    assert set(first) == {"time", "user_id", "variant", "bundle", "item_ids", "scores", "positions"}
    assert before <= first["time"] <= time.time()
    assert first["item_ids"] == ["a", "b"] and first["scores"] == [2.0, 1.0]
    assert first["positions"] == [1, 2]
    assert (second["user_id"], second["variant"], second["positions"]) == (None, "CHALLENGER", [])


def test_threads_and_processes_append_whole_lines(tmp_path):
    path = tmp_path / "exposure.jsonl"
    items = [f"item-{i:04d}" for i in range(300)]  # ~4 KB lines: larger than one small write
    code = (
        "import sys; from recsys.serving.exposure import ExposureLog;"
        f"log = ExposureLog({str(path)!r}); items = {items!r};"
        "[log.write(user_id=f'p{i}', variant='B', bundle='v', item_ids=items,"
        " scores=[1.0] * len(items)) for i in range(200)]"
    )
    other = subprocess.Popen([sys.executable, "-c", code])
    log = ExposureLog(path)

    def writer(n: int) -> None:
        for i in range(100):
            log.write(user_id=f"t{n}-{i}", variant="A", bundle="v", item_ids=items, scores=[0.5])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other.wait(timeout=60) == 0
    files = sorted(tmp_path.glob("exposure.*.jsonl"))
    assert len(files) == 2 and process_path(path) in files  # this process's and the child's
    records = {f: [json.loads(line) for line in f.read_text().splitlines()] for f in files}
    assert len(records[process_path(path)]) == 4 * 100
    assert sum(len(r) for r in records.values()) == 4 * 100 + 200
    everything = [r for rs in records.values() for r in rs]
    assert all(r["item_ids"] == items for r in everything)
    assert sum(r["variant"] == "B" for r in everything) == 200


def test_the_ab_report_reader_accepts_what_the_api_writes(tmp_path):
    """`recsys ab-report --exposures <the configured path>` reads every process's file."""
    from recsys.evaluation.exposures import read_exposures

    path = tmp_path / "exposure.jsonl"
    log = ExposureLog(path)
    now = time.time()
    log.write(user_id="u1", variant="CURRENT", bundle="v1", item_ids=["a", "b"], scores=[2.0, 1.0])
    log.write(user_id=None, variant="CURRENT", bundle="v1", item_ids=["c"], scores=[0.5])
    log.close()
    code = (
        "from recsys.serving.exposure import ExposureLog;"
        f"log = ExposureLog({str(path)!r});"
        "log.write(user_id='u2', variant='CHALLENGER', bundle='v2', item_ids=['c'], scores=[0.5])"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    frame = read_exposures(path).sort("user_id", nulls_last=True)
    assert frame["user_id"].to_list() == ["u1", "u2", None]  # anonymous stays null
    assert frame["variant"].to_list() == ["CURRENT", "CHALLENGER", "CURRENT"]
    assert frame["item_ids"].to_list() == [["a", "b"], ["c"], ["c"]]
    assert frame["file"].n_unique() == 2
    assert abs(frame["time"][0] - now) <= 2  # epoch seconds


def test_a_special_file_is_written_as_it_is(tmp_path):
    """exposure_log = /dev/stdout (containers) or /dev/full: no per-process name beside it."""
    assert process_path("/dev/full") == Path("/dev/full")
    assert process_path(tmp_path / "exposure.jsonl").name.startswith("exposure.")
    assert process_path(tmp_path / "exposure.jsonl") != tmp_path / "exposure.jsonl"
