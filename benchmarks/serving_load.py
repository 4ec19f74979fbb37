"""Benchmark (serving stage): throughput and p50/p99 latency of GET /v1/users/{id}/recommendations
beside a bare Flask JSON route (/v1/_bare) on the same gunicorn server and config, in one run.

    python benchmarks/serving_load.py --workdir WORKDIR --data DATA_DIR

WORKDIR holds a published bundle (CURRENT), e.g. made by `recsys nightly --data DATA_DIR --workdir
WORKDIR`; DATA_DIR gives the user ids to ask for (known users, as in production). The server runs
`recsys serve`'s exact gunicorn command; the load comes from a second process (this script with
--client) over loopback, keep-alive connections, closed loop. Routes alternate in rounds so that
drift on a shared machine hits both. The in-process ranking time of the same requests comes back in
the Server-Timing header and is reported beside the HTTP latency. Last, with the server stopped,
model.recommend runs for the same users in one plain process (no HTTP, no Flask, the workers' thread
limits): the model's own capacity, times the number of workers, is what the served route can reach.
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

# "live": the same request with an exclusion (of an id no bundle has), which bypasses the top-k
# precomputed at publish: the full ranking path, every request.
ROUTES = {
    "bare": "/v1/_bare",
    "user": "/v1/users/{user_id}/recommendations?k=10",
    "live": "/v1/users/{user_id}/recommendations?k=10&exclude=bench-none",
}
NAMES = tuple(ROUTES)


def client(url: str, route: str, seconds: float, connections: int, users: list[str]) -> dict:
    """Closed-loop load: `connections` threads, one keep-alive connection each."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    rank_ms: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    deadline = time.perf_counter() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.perf_counter() < deadline:
            path = ROUTES[route].format(user_id=rng.choice(users) if users else "x")
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            latencies[n].append(time.perf_counter() - started)
            if response.status != 200:
                errors[n] += 1
            timing = response.getheader("Server-Timing", "")
            if timing.startswith("rank;dur="):
                rank_ms[n].append(float(timing.split("=", 1)[1]))
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000.0  # (requests,) ms
    ranks = np.concatenate([np.asarray(x) for x in rank_ms])  # (requests,) ms
    return {
        "route": route,
        "requests": int(lat.size),
        "errors": int(sum(errors)),
        "rps": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "rank_p50_ms": float(np.percentile(ranks, 50)) if ranks.size else None,
        "rank_p99_ms": float(np.percentile(ranks, 99)) if ranks.size else None,
    }


def in_process(
    workdir: Path, seconds: float, native_threads: int, users: list[str], live: bool = False
) -> dict:
    """The peer of the served route: model.recommend for the same users, sequentially, in one
    process with the workers' thread limits, no HTTP, no Flask."""
    from recsys.bundle import current_bundle
    from recsys.ranking.model import RecommenderModel
    from recsys.serving.threads import limit_threads

    limit_threads(native_threads)
    model = RecommenderModel.load(current_bundle(workdir))
    model.warm_up()
    rng, latencies = random.Random(0), []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        model.recommend(user_id=rng.choice(users), k=10, exclude=["bench-none"] if live else ())
        latencies.append(time.perf_counter() - started)
    lat = np.asarray(latencies) * 1000.0  # (requests,) ms
    return {
        "route": "in-process live" if live else "in-process",
        "requests": int(lat.size),
        "rps": 1000.0 / float(lat.mean()),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def run_in_process(args: argparse.Namespace, users_file: Path, live: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--in-process", "--workdir", str(args.workdir)]
    cmd += ["--live"] if live else []
    cmd += ["--seconds", str(args.seconds), "--users-file", str(users_file)]
    cmd += ["--native-threads", str(args.native_threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_client(url: str, route: str, seconds: float, connections: int, users_file: Path) -> dict:
    """The load generator in its own process (this file with --client), result as JSON."""
    cmd = [sys.executable, __file__, "--client", url, "--route", route, "--seconds", str(seconds)]
    cmd += ["--connections", str(connections), "--users-file", str(users_file)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def known_users(data: Path, limit: int = 5000) -> list[str]:
    from recsys.config import DataConfig
    from recsys.data.loaders import load_dataset
    from recsys.schema import USER_ID

    dataset = load_dataset(data, DataConfig())
    users = dataset.users[USER_ID].to_list()
    random.Random(0).shuffle(users)
    return users[:limit]


def machine(native_threads: int) -> str:
    return common.machine(f"torch/FAISS/OpenMP threads per worker {native_threads}")


def serve_and_measure(args: argparse.Namespace) -> list[dict]:
    from recsys.serving.live import live_server

    users_file = Path(args.workdir) / ".bench-users.json"
    users_file.write_text(json.dumps(known_users(Path(args.data))))
    env = {"RECSYS_BENCH_ROUTES": "1", "RECSYS_NATIVE_THREADS": str(args.native_threads)}
    results = []
    try:
        with live_server(
            args.workdir, workers=args.workers, threads=args.threads, env=env
        ) as server:
            for route in NAMES:  # warm-up: caches, connection pools, JIT-free paths
                run_client(server.url, route, 3.0, args.connections, users_file)
            for _ in range(args.rounds):
                for route in NAMES:
                    results.append(
                        run_client(server.url, route, args.seconds, args.connections, users_file)
                    )
        results.append(run_in_process(args, users_file))  # after the server: no competition
        results.append(run_in_process(args, users_file, live=True))
    finally:
        users_file.unlink(missing_ok=True)
    return results


def report(args: argparse.Namespace, results: list[dict]) -> None:
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine(args.native_threads))
    print(
        f"server: gunicorn gthread, {args.workers} workers x {args.threads} threads; "
        f"client: 1 process, {args.connections} keep-alive connections, {args.seconds:.0f} s x "
        f"{args.rounds} rounds per route, interleaved"
    )
    alone = next(r for r in results if r["route"] == "in-process")
    alone_live = next(r for r in results if r["route"] == "in-process live")
    results = [r for r in results if not r["route"].startswith("in-process")]
    by_route = {r: [x for x in results if x["route"] == r] for r in NAMES}
    mean = {r: {k: float(np.mean([x[k] for x in v])) for k in ("rps", "p50_ms", "p99_ms")}
            for r, v in by_route.items()}  # fmt: skip
    for r in results:
        extra = ""
        if r["rank_p50_ms"] is not None:
            extra = f"  in-process rank p50 {r['rank_p50_ms']:.2f} ms p99 {r['rank_p99_ms']:.2f} ms"
        print(
            f"  {r['route']:>5}: {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}/{r['requests']}{extra}"
        )
    user, bare, live = mean["user"], mean["bare"], mean["live"]
    ranks = [r for r in by_route["user"] if r["rank_p99_ms"] is not None]
    print(
        f"recommendations / bare throughput: {user['rps']:.1f} / {bare['rps']:.1f} req/s = "
        f"{user['rps'] / bare['rps']:.2f} (goal >= 0.50)"
    )
    print(
        f"live-ranked recommendations (exclude= bypasses the precomputed top-k) / bare: "
        f"{live['rps']:.1f} / {bare['rps']:.1f} req/s = {live['rps'] / bare['rps']:.2f}; "
        f"p50 {live['p50_ms']:.2f} ms, p99 {live['p99_ms']:.2f} ms"
    )
    print(
        f"in-process live model.recommend: {alone_live['rps']:.1f} req/s, p50 "
        f"{alone_live['p50_ms']:.2f} ms, p99 {alone_live['p99_ms']:.2f} ms"
    )
    capacity = alone["rps"] * args.workers
    print(
        f"in-process model.recommend (1 process, sequential, same users): {alone['rps']:.1f} "
        f"req/s, p50 {alone['p50_ms']:.2f} ms, p99 {alone['p99_ms']:.2f} ms; x {args.workers} "
        f"workers = {capacity:.1f} req/s; served / that = {user['rps'] / capacity:.2f}"
    )
    print(f"p50 latency recommendations {user['p50_ms']:.2f} ms vs bare {bare['p50_ms']:.2f} ms")
    if ranks:
        rank_p99 = float(np.mean([r["rank_p99_ms"] for r in ranks]))
        print(
            f"p99 latency recommendations {user['p99_ms']:.2f} ms vs in-process ranking p99 "
            f"{rank_p99:.2f} ms for the same requests (HTTP+queueing overhead "
            f"{user['p99_ms'] - rank_p99:.2f} ms); bare p99 {bare['p99_ms']:.2f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="work directory with a CURRENT bundle")
    parser.add_argument("--data", type=Path, help="the data directory the bundle was built from")
    parser.add_argument("--seconds", type=float, default=15.0, help="per round and route")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--native-threads", type=int, default=1)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: the load process
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--route", choices=sorted(ROUTES), help=argparse.SUPPRESS)
    parser.add_argument("--users-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        users = json.loads(args.users_file.read_text())
        print(json.dumps(client(args.client, args.route, args.seconds, args.connections, users)))
        return 0
    if args.in_process:
        users = json.loads(args.users_file.read_text())
        stats = in_process(args.workdir, args.seconds, args.native_threads, users, args.live)
        print(json.dumps(stats))
        return 0
    if args.workdir is None or args.data is None:
        parser.error("--workdir and --data are required")
    report(args, serve_and_measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
