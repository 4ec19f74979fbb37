"""Benchmark (serving stage): a soak of the incident path — reloads, rollbacks and pointer-only
promotions under concurrent load on a gunicorn server — checking every answer against the
switches (issue 17), and measuring how long a switch takes to reach every worker.

    python benchmarks/soak.py --workdir WORKDIR

WORKDIR holds a published bundle (CURRENT), e.g. made by `recsys nightly --data data/sample
--config configs/sample.toml --workdir WORKDIR`. Its bundle is copied into a scratch work
directory and cloned under new versions (same files, so each loads like the real one). The server
runs `recsys serve`'s exact gunicorn command (4 workers by default); the load comes from a second
process (this script with --client): 16 clients by default, half on keep-alive connections (which
stay with one worker), half on a new connection per request (spread over the workers), routes
mixed. The switches are spread over the run. Pass: 0 non-2xx answers and 0 stale answers — a
request *sent* after a reload or rollback answered that names a bundle older than that switch.
Times are CLOCK_MONOTONIC, shared by the two processes on one machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common
import soak_report

TOKEN = "soak-admin-token"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="work directory with a CURRENT bundle")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=75.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="request threads per worker")
    parser.add_argument("--reloads", type=int, default=6)
    parser.add_argument("--rollbacks", type=int, default=3)
    parser.add_argument("--promotions", type=int, default=2, help="pointer moves, no admin call")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: the load process
    parser.add_argument("--ids-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the load process ----


def client_main(args: argparse.Namespace) -> None:
    """16 threads until --seconds: (sent, received, status, bundle, keep-alive) per request."""
    import requests

    ids = json.loads(args.ids_file.read_text())
    deadline = time.monotonic() + args.seconds
    records: list[list] = [[] for _ in range(args.clients)]

    def run(n: int) -> None:
        rng, keep = random.Random(n), n % 2 == 0
        session = requests.Session()
        while time.monotonic() < deadline:
            method, path, body = _request(rng, ids)
            headers = {} if keep else {"Connection": "close"}
            sent = time.monotonic()
            try:
                answer = (session if keep else requests).request(
                    method, args.client + path, json=body, headers=headers, timeout=60
                )
                status, bundle = answer.status_code, answer.json().get("bundle")
            except (requests.RequestException, ValueError) as exc:
                status, bundle = 0, type(exc).__name__
            records[n].append((sent, time.monotonic(), status, bundle, keep))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    args.out.write_text(json.dumps([r for per_client in records for r in per_client]))


def _request(rng: random.Random, ids: dict) -> tuple[str, str, dict | None]:
    kind = rng.randrange(4)
    if kind <= 1:  # the common case: a known user
        return "GET", f"/v1/users/{rng.choice(ids['users'])}/recommendations?k=10", None
    if kind == 2:
        return "POST", "/v1/recommendations", {"item_ids": rng.sample(ids["items"], 3), "k": 10}
    return "GET", f"/v1/items/{rng.choice(ids['items'])}/similar?k=10", None


# ---- the controller ----


def prepare(source: Path, scratch: Path, clones: int) -> tuple[Path, list[str], dict]:
    """A scratch work directory: the source's CURRENT bundle plus `clones` copies of it."""
    import polars as pl

    from recsys import bundle
    from recsys.schema import ITEM_ID

    version = bundle.read_pointer(source)
    if version is None:
        raise SystemExit(f"{source}: no CURRENT bundle; run `recsys nightly` first")
    workdir = scratch / "var"
    shutil.copytree(bundle.bundle_path(source, version), bundle.bundle_path(workdir, version))
    versions = [version] + [_clone(workdir, version, f"{version}-s{i}") for i in range(clones)]
    bundle.set_pointer(workdir, version, reason="soak start")
    path = bundle.bundle_path(workdir, version)
    items = pl.read_parquet(path / "items.parquet", columns=[ITEM_ID])[ITEM_ID].to_list()
    ids = {"users": json.loads((path / "users.json").read_text())[:5000], "items": items[:5000]}
    return workdir, versions, ids


def _clone(workdir: Path, version: str, new: str) -> str:
    from recsys import bundle

    target = bundle.bundle_path(workdir, new)
    shutil.copytree(bundle.bundle_path(workdir, version), target)
    manifest = json.loads((target / bundle.MANIFEST).read_text())
    (target / bundle.MANIFEST).write_text(json.dumps({**manifest, "version": new}))
    return new


def schedule(args: argparse.Namespace) -> list[str]:
    """Actions spread over the run: reloads first, then rollbacks and promotions mixed in."""
    actions = ["reload"] * args.reloads
    for i in range(args.rollbacks):  # after the 2nd, 4th, ... reload: there is a stack to walk
        actions.insert(min(len(actions), 2 + 3 * i), "rollback")
    for i in range(args.promotions):
        actions.insert(min(len(actions), 1 + 4 * i), "promote")
    return actions


def drive(url: str, workdir: Path, versions: list[str], args, started: float) -> list[dict]:
    """Carry out the schedule; each event: action, target, start, done (admin answered)."""
    import requests

    from recsys import bundle

    actions, fresh = schedule(args), iter(versions[1:])
    events = []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for n, action in enumerate(actions, start=1):
        time.sleep(max(0.0, started + n * args.seconds / (len(actions) + 1) - time.monotonic()))
        event = {"action": action, "start": time.monotonic()}
        if action == "rollback":
            answer = requests.post(f"{url}/admin/rollback", headers=auth, timeout=300)
            event["target"] = answer.json().get("rolled_back_to")
        else:
            event["target"] = next(fresh)
            bundle.set_pointer(workdir, event["target"], reason=f"soak {action}")
            answer = None  # a promotion: the workers notice the pointer themselves
            if action == "reload":
                answer = requests.post(f"{url}/admin/reload", headers=auth, timeout=300)
        if answer is not None:
            event.update(done=time.monotonic(), status=answer.status_code, body=answer.json())
        events.append(event)
    return events


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        client_main(args)
        return 0
    from recsys.serving.live import live_server

    common.header("Soak: reloads, rollbacks and promotions under load (issue 17)")
    scratch = Path(tempfile.mkdtemp(prefix="recsys-soak-"))
    try:
        clones = args.reloads + args.promotions
        workdir, versions, ids = prepare(args.workdir, scratch, clones)
        (scratch / "ids.json").write_text(json.dumps(ids))
        config = scratch / "serving.toml"
        config.write_text(f"[serving]\npoll_seconds = {args.poll_seconds}\n")
        env = {"RECSYS_ADMIN_TOKEN": TOKEN}
        with live_server(
            workdir, config=config, workers=args.workers, threads=args.threads, env=env
        ) as server:
            load = _start_load(args, server.url, scratch)
            started = time.monotonic()
            events = drive(server.url, workdir, versions, args, started)
            if load.wait(timeout=args.seconds + 300) != 0:
                raise SystemExit(f"load process failed:\n{load.stderr.read()}")
        records = json.loads((scratch / "records.json").read_text())
        print(
            f"server: {args.workers} workers x {args.threads} threads, poll_seconds "
            f"{args.poll_seconds:g}; bundle {versions[0]} and {len(versions) - 1} copies"
        )
        return soak_report.report(records, events, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _start_load(args: argparse.Namespace, url: str, scratch: Path) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--client", url, "--clients", str(args.clients)]
    cmd += ["--seconds", str(args.seconds), "--ids-file", str(scratch / "ids.json")]
    cmd += ["--out", str(scratch / "records.json")]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


if __name__ == "__main__":
    sys.exit(main())
