"""Benchmark (serving stage): read throughput of the API while the live store is written — 16
clients reading while one writer posts 50 events/s and upserts 1 item/s — beside the same reads
without writes and a bare Flask route, on one gunicorn server in one run.

    python benchmarks/live_load.py --workdir WORKDIR --data DATA_DIR [--seconds 30]

WORKDIR holds a published bundle (CURRENT) built from DATA_DIR. Phases, each `--seconds` long,
in this order, repeated `--rounds` times: bare (no writes), plain known users (no writes), plain
known users while writing (events go to a separate set of "event users"), event users while
writing (a third of the users, at most 300, receive every event, so all have some by then;
their lists: history + events, ranked once per event, then filtered). The load
generator is a second process (16 keep-alive connections, closed loop); the writer threads of
this process, paced open-loop (events on --writer-connections connections, upserts on one more;
the events/s reached is printed beside the phase). Figures: requests/s, p50/p99 and errors of
each phase, and the ratios the issue asks for: plain with writes / plain without (goal >= 0.7),
event users / bare (>= 0.5).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
import numpy as np

TOKEN = "live-bench-token"
ROUTES = {"bare": "/v1/_bare", "user": "/v1/users/{user_id}/recommendations?k=10"}


def client(url: str, route: str, seconds: float, connections: int, users: list[str]) -> dict:
    """Closed-loop reads: `connections` threads, one keep-alive connection each."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    deadline = time.perf_counter() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.perf_counter() < deadline:
            path = ROUTES[route].format(user_id=rng.choice(users) if users else "x")
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            latencies[n].append(time.perf_counter() - started)
            errors[n] += not ok
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000.0  # (requests,) ms
    return {
        "requests": int(lat.size),
        "errors": int(sum(errors)),
        "rps": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


class Writer:
    """One writing client: posts `events_per_s` single events (to `users`, bundle items) spread
    over `connections` keep-alive connections and upserts `items_per_s` new items on one more,
    each paced on a fixed schedule (open loop: a write waiting behind the readers, or a slow
    upsert embedded by the item tower, does not lower the rate asked); counts writes, errors
    and latencies. The rate reached is printed beside the one asked."""

    def __init__(self, url, users, items, texts, events_per_s=50.0, items_per_s=1.0, connections=4):
        self.url, self.users, self.items, self.texts = url, users, items, texts
        self.events_per_s, self.items_per_s = events_per_s, items_per_s
        self.stop = threading.Event()
        self.events = self.upserts = self.errors = 0
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self._lock = threading.Lock()  # the threads count events, errors and latencies
        self._connections = connections
        self._tag = f"{time.time():.0f}"  # new item ids in every phase and run
        rate = events_per_s / connections
        self._threads = [
            threading.Thread(target=self._paced, args=(self._event, rate, n), daemon=True)
            for n in range(connections)
        ] + [threading.Thread(target=self._paced, args=(self._upsert, items_per_s), daemon=True)]

    def start(self) -> None:
        self._started = time.perf_counter()
        for t in self._threads:
            t.start()

    def join(self) -> None:
        for t in self._threads:
            t.join()
        self.elapsed = time.perf_counter() - self._started

    def _paced(self, send, per_s: float, n: int = -1) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        rng, gap = random.Random(n), 1.0 / per_s
        due = time.perf_counter() + gap * max(n, 0) / max(self._connections, 1)  # staggered
        while not self.stop.is_set():
            now = time.perf_counter()
            if now < due:
                time.sleep(min(due - now, 0.05))
                continue
            conn = send(conn, rng)
            due += gap  # a fixed schedule: a late write is followed at once by the next
        conn.close()

    def _event(self, conn, rng):
        event = {"user_id": rng.choice(self.users), "item_id": rng.choice(self.items)}
        with self._lock:
            self.events += 1
        return self._send(conn, "POST", "/v1/events", event)

    def _upsert(self, conn, rng):
        body = dict(rng.choice(self.texts))
        body["title"] = f"{body.get('title') or ''} (live {self.upserts})"
        self.upserts += 1
        return self._send(conn, "PUT", f"/v1/items/bench-live-{self._tag}-{self.upserts}", body)

    def _send(self, conn, method, path, body):
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            conn.request(method, path, body=json.dumps(body), headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            host, port = self.url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        with self._lock:
            self.errors += not ok
            self.latencies.append(time.perf_counter() - started)
        return conn


def run_client(url: str, route: str, args: argparse.Namespace, users_file: Path) -> dict:
    cmd = [sys.executable, __file__, "--client", url, "--route", route]
    cmd += ["--seconds", str(args.seconds), "--clients", str(args.clients)]
    cmd += ["--users-file", str(users_file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def catalog(data: Path) -> tuple[list[str], list[str], list[dict]]:
    """(known users, item ids, item text columns) of the data directory."""
    from recsys.config import DataConfig
    from recsys.data.loaders import load_dataset
    from recsys.schema import ITEM_ID, ITEM_IDX, USER_ID

    dataset = load_dataset(data, DataConfig())
    users = dataset.users[USER_ID].to_list()
    random.Random(0).shuffle(users)
    texts = dataset.items.drop(ITEM_ID, ITEM_IDX).head(200).to_dicts()
    return users, dataset.items[ITEM_ID].to_list(), texts


def phase(server_url, name, route, users, args, scratch, writer_args=None) -> dict:
    users_file = scratch / f"users-{name}.json"
    users_file.write_text(json.dumps(users))
    writer = Writer(server_url, *writer_args) if writer_args else None
    if writer:
        writer.start()
    result = run_client(server_url, route, args, users_file)
    if writer:
        writer.stop.set()
        writer.join()
        lat = np.asarray(writer.latencies) * 1000.0
        result["writer"] = {
            "events": writer.events,
            "events_per_s": writer.events / writer.elapsed,
            "upserts": writer.upserts,
            "errors": writer.errors,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        }
    result["phase"] = name
    return result


def measure(args: argparse.Namespace) -> list[dict]:
    from recsys.serving.live import live_server

    users, items, texts = catalog(Path(args.data))
    # the writer's events go to a third of the users (at most 300): by the last phase each has
    # had several
    cut = min(300, len(users) // 3)
    eventful, plain = users[:cut], users[cut:]
    env = {"RECSYS_BENCH_ROUTES": "1", "RECSYS_ADMIN_TOKEN": TOKEN}
    scratch = Path(args.workdir) / ".live-bench"
    scratch.mkdir(exist_ok=True)
    writes = (eventful, items, texts, args.events_per_s, args.items_per_s, args.writer_connections)
    results = []
    with live_server(args.workdir, workers=args.workers, threads=args.threads, env=env) as server:
        url = server.url
        warm = argparse.Namespace(**{**vars(args), "seconds": 3.0})  # caches, pools
        for route, who in (("bare", []), ("user", users)):
            phase(url, "warm-up", route, who, warm, scratch)
        for _ in range(args.rounds):
            results.append(phase(url, "bare", "bare", [], args, scratch))
            results.append(phase(url, "plain", "user", plain, args, scratch))
            results.append(phase(url, "plain+writes", "user", plain, args, scratch, writes))
            results.append(
                phase(url, "event users+writes", "user", eventful, args, scratch, writes)
            )
    return results


def report(args: argparse.Namespace, results: list[dict]) -> None:
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print("machine:", common.machine(), "(the load average includes this benchmark's own threads)")
    print(
        f"server: gunicorn gthread, {args.workers} workers x {args.threads} threads; client: 1 "
        f"process, {args.clients} keep-alive connections; {args.seconds:.0f} s per phase, "
        f"{args.rounds} round(s); writer {args.events_per_s:g} events/s + "
        f"{args.items_per_s:g} item upserts/s (events on {args.writer_connections} connections, "
        "upserts on one more)"
    )
    for r in results:
        line = (
            f"  {r['phase']:>19}: {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}/{r['requests']}"
        )
        if "writer" in r:
            w = r["writer"]
            line += (
                f"  | writer: {w['events']} events ({w['events_per_s']:.1f}/s), "
                f"{w['upserts']} upserts, errors "
                f"{w['errors']}, p50 {w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms"
            )
        print(line)
    mean = {
        name: float(np.mean([r["rps"] for r in results if r["phase"] == name]))
        for name in ("bare", "plain", "plain+writes", "event users+writes")
    }
    errors = sum(r["errors"] + r.get("writer", {}).get("errors", 0) for r in results)
    print(f"errors, all phases (reads and writes): {errors}")
    print(
        f"plain known users with writes / without: {mean['plain+writes']:.1f} / "
        f"{mean['plain']:.1f} req/s = {mean['plain+writes'] / mean['plain']:.2f} (goal >= 0.70)"
    )
    print(
        f"users with recent events (with writes) / bare: {mean['event users+writes']:.1f} / "
        f"{mean['bare']:.1f} req/s = {mean['event users+writes'] / mean['bare']:.2f} "
        "(goal >= 0.50)"
    )
    print(
        f"plain known users (no writes) / bare: {mean['plain']:.1f} / {mean['bare']:.1f} req/s = "
        f"{mean['plain'] / mean['bare']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="work directory with a CURRENT bundle")
    parser.add_argument("--data", type=Path, help="the data directory the bundle was built from")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--events-per-s", type=float, default=50.0)
    parser.add_argument("--items-per-s", type=float, default=1.0)
    parser.add_argument(
        "--writer-connections", type=int, default=4, help="connections posting the events"
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: the load process
    parser.add_argument("--route", choices=sorted(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--users-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        users = json.loads(args.users_file.read_text())
        print(json.dumps(client(args.client, args.route, args.seconds, args.clients, users)))
        return 0
    if args.workdir is None or args.data is None:
        parser.error("--workdir and --data are required")
    report(args, measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
