"""Benchmark (issue 20), section `api` of benchmarks/scaleout.py: the API on a generated 1M-item
bundle under real gunicorn with 4 workers, bundle arrays memory-mapped vs private copies, same run.

Writes one bundle (the library's own writers: ContentRecommender with the `auto` FAISS index,
PopularityRecommender, BlendedRanker, write_model_files, bundle.publish) to a work directory, then
serves it twice, RECSYS_BUNDLE_MMAP=0 (every worker reads its own copy) and =1 (every worker maps
the files: one copy in the host's page cache); each time a client process sends live-ranked
requests (known users with an exclusion, which bypasses any precomputed list: the user's history
is encoded and ranked against the whole catalog) for a fixed time, then every worker's
/proc/<pid>/smaps_rollup is read: Rss counts shared pages in full in every process, Pss divides
each page among the processes mapping it, so Pss shows the sharing.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import numpy as np

ROLLUP = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Dirty", "Shared_Clean")


def build_bundle(workdir: Path, n_items: int, n_users: int, dim: int, seed: int) -> str:
    """Publish a bundle of `n_items` generated clustered item vectors (dim `dim`), users with
    5-40 items of history each, text (history-mean tower, `auto` index) + popularity blended."""
    import polars as pl
    import scipy.sparse as sp
    from scaleout import clustered_sphere, mixture

    from recsys import bundle
    from recsys.config import BlendConfig, IndexConfig
    from recsys.ids import IdMap
    from recsys.index import VectorIndex
    from recsys.ranking.blend import BlendedRanker
    from recsys.ranking.content import ContentRecommender
    from recsys.ranking.model import write_model_files
    from recsys.ranking.popularity import PopularityRecommender
    from recsys.ranking.segments import SegmentWeights
    from recsys.ranking.user_vectors import HistoryMeanEncoder
    from recsys.schema import ITEM_ID, ITEM_IDX

    vectors = clustered_sphere(n_items, 1.0, mixture(dim, 1000, seed), seed + 1)  # (n_items, dim)
    rng = np.random.default_rng(seed + 2)
    histories = [rng.integers(0, n_items, rng.integers(5, 41)) for _ in range(n_users)]
    rows = np.repeat(np.arange(n_users), [len(h) for h in histories])
    counts = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, np.concatenate(histories))),
        shape=(n_users, n_items),
    )
    started = time.perf_counter()
    index = VectorIndex.build(vectors, IndexConfig(use_gpu="never"))  # auto: IVF-PQ at 1M
    print(f"index {index.factory} built in {time.perf_counter() - started:.0f} s", flush=True)
    text = ContentRecommender(vectors, HistoryMeanEncoder(), index)
    config = BlendConfig(sources=["text", "popularity"])
    weights = SegmentWeights.fixed({"text": 0.8, "popularity": 0.2}, config.segment_bounds)
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    sources = {"text": text, "popularity": PopularityRecommender.fit(counts)}
    ranker = BlendedRanker(sources, weights, config, lengths)
    items = pl.DataFrame(
        {
            ITEM_IDX: np.arange(n_items, dtype=np.int32),
            ITEM_ID: [f"i{i}" for i in range(n_items)],
            "title": [f"item {i}" for i in range(n_items)],
        }
    )
    users = IdMap([f"u{u}" for u in range(n_users)])
    version = bundle.new_version()
    with bundle.staging(workdir, version) as stage:
        write_model_files(stage, ranker, items, users, [np.sort(h) for h in histories])
        bundle.publish(stage, workdir, version, {"note": "benchmarks/scaleout.py --sections api"})
    bundle.set_pointer(workdir, version, reason="benchmark")
    return version


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def rollup(pid: int) -> dict[str, int]:
    """Bytes of each ROLLUP field of /proc/<pid>/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ROLLUP:
            out[key] = int(rest.split()[0]) * 1024
    return out


def serve_once(workdir: Path, mmap: bool, args, users_file: Path, retrieval: bool = True) -> dict:
    """Start gunicorn (4 workers) on the bundle, warm up, measure live requests, read memory.
    retrieval=False: RECSYS_RETRIEVAL=0, the blend scores every source over the whole catalog."""
    from serving_load import run_client

    from recsys.serving.live import live_server

    env = {"RECSYS_BUNDLE_MMAP": "1" if mmap else "0", "RECSYS_NATIVE_THREADS": "1"}
    env["RECSYS_RETRIEVAL"] = "1" if retrieval else "0"
    started = time.perf_counter()
    with live_server(workdir, workers=args.api_workers, threads=2, env=env, timeout=1800) as server:
        ready_s = time.perf_counter() - started
        run_client(server.url, "live", 5.0, args.connections, users_file)  # warm-up
        load = run_client(server.url, "live", args.seconds, args.connections, users_file)
        pids = worker_pids(server.process.pid)
        memory = [rollup(pid) for pid in pids]
        log = server.log_path.read_text(errors="replace")
    hashed = len(re.findall(r"sha256 of \d+ files verified", log))
    skipped = log.count("verified earlier on this host")
    return {"mmap": mmap, "retrieval": retrieval, "ready_s": ready_s, "load": load,
            "workers": memory, "hashed": hashed, "skipped": skipped}  # fmt: skip


def api_section(args) -> None:
    """Build (or reuse, --api-workdir with a CURRENT) the bundle, serve it copied then mapped."""
    import tempfile

    from recsys.bundle import current_bundle

    own = args.api_workdir is None
    workdir = Path(args.api_workdir or tempfile.mkdtemp(prefix="scaleout-api-"))
    if current_bundle(workdir) is None:
        started = time.perf_counter()
        version = build_bundle(workdir, args.items, args.api_users, args.dim, args.seed)
        print(f"bundle {version} written in {time.perf_counter() - started:.0f} s", flush=True)
    path = current_bundle(workdir)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    users_file = workdir / ".bench-users.json"
    users = [f"u{u}" for u in range(args.api_users)]
    random.Random(args.seed).shuffle(users)
    users_file.write_text(json.dumps(users[:5000]))
    if args.api_compare == "retrieval":  # both memory-mapped: dense candidates, then retrieval
        runs = [serve_once(workdir, True, args, users_file, on) for on in (False, True)]
        print_ranking(runs, args, path)
        print_agreement(path, args.seed)
    else:
        runs = [serve_once(workdir, mmap, args, users_file) for mmap in (False, True)]
        print_api(runs, args, path, size)
    if own:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _mib(values: list[int]) -> str:
    return f"{np.mean(values) / 2**20:,.0f} (max {max(values) / 2**20:,.0f})"


def print_api(runs: list[dict], args, path: Path, size: int) -> None:
    print(
        f"\n## API on a {args.items:,}-item bundle: gunicorn {args.api_workers} workers x 2 "
        f"threads, copied vs memory-mapped arrays"
    )
    print(
        f"bundle: {path.name}, {size / 2**20:,.0f} MiB on disk (item vectors {args.items:,} x "
        f"{args.dim} float32, FAISS `auto` index, popularity, {args.api_users:,} users); client: "
        f"{args.connections} keep-alive connections, {args.seconds:.0f} s of live-ranked "
        f"GET /v1/users/{{id}}/recommendations?k=10&exclude=... after 5 s of warm-up"
    )
    print(
        "| arrays | ready s | req/s | p50 ms | p99 ms | rank p50 / p99 ms (in worker) | "
        "RSS MiB per worker | PSS MiB per worker | PSS anon / file MiB per worker | "
        "PSS MiB, all workers | bundle hashed / skipped (workers) |"
    )
    print("|---" * 11 + "|")
    for run in runs:
        load, mem = run["load"], run["workers"]
        pss = [m["Pss"] for m in mem]
        print(
            f"| {'memory-mapped' if run['mmap'] else 'copied'} | {run['ready_s']:.0f} | "
            f"{load['rps']:.1f} | {load['p50_ms']:.1f} | {load['p99_ms']:.1f} | "
            f"{load['rank_p50_ms']:.1f} / {load['rank_p99_ms']:.1f} | "
            f"{_mib([m['Rss'] for m in mem])} | {_mib(pss)} | "
            f"{np.mean([m['Pss_Anon'] for m in mem]) / 2**20:,.0f} / "
            f"{np.mean([m['Pss_File'] for m in mem]) / 2**20:,.0f} | {sum(pss) / 2**20:,.0f} | "
            f"{run['hashed']} / {run['skipped']} |"
        )
        if load["errors"]:
            print(f"  ({load['errors']} of {load['requests']} requests failed)")
    copied, mapped = runs
    ratio = sum(m["Pss"] for m in mapped["workers"]) / sum(m["Pss"] for m in copied["workers"])
    p99 = mapped["load"]["p99_ms"] / copied["load"]["p99_ms"]
    print(f"PSS of all workers, mapped / copied: {ratio:.2f}; p99 mapped / copied: {p99:.2f}")


def print_ranking(runs: list[dict], args, path: Path) -> None:
    """Dense candidates (RECSYS_RETRIEVAL=0) vs retrieval, same bundle, same client, same run."""
    print(
        f"\n## Live ranking on a {args.items:,}-item bundle: dense candidates vs retrieval "
        f"(gunicorn {args.api_workers} workers x 2 threads, memory-mapped; bundle {path.name})"
    )
    print("| candidates | req/s | p50 ms | p99 ms | rank p50 / p99 ms (in worker) | errors |")
    print("|---" * 6 + "|")
    for run in runs:
        load = run["load"]
        print(
            f"| {'retrieval' if run['retrieval'] else 'dense (RECSYS_RETRIEVAL=0)'} | "
            f"{load['rps']:.1f} | {load['p50_ms']:.1f} | {load['p99_ms']:.1f} | "
            f"{load['rank_p50_ms']:.1f} / {load['rank_p99_ms']:.1f} | "
            f"{load['errors']} of {load['requests']} |"
        )
    dense, retrieval = (run["load"] for run in runs)
    print(
        f"retrieval / dense: p50 {retrieval['p50_ms'] / dense['p50_ms']:.3f}, "
        f"p99 {retrieval['p99_ms'] / dense['p99_ms']:.3f}, "
        f"req/s {retrieval['rps'] / dense['rps']:.1f}x"
    )


def top10_agreement(ranker, queries, exclude) -> tuple[float, float, float, float]:
    """Dense vs retrieval top-10 of the same queries, in this process: mean overlap, share of
    identical lists, and the seconds each path took."""
    import os

    lists, seconds = [], []
    for flag in ("0", "1"):
        os.environ["RECSYS_RETRIEVAL"] = flag
        started = time.perf_counter()
        lists.append(ranker.recommend_detailed(queries, 10, exclude).item_idx)
        seconds.append(time.perf_counter() - started)
    os.environ.pop("RECSYS_RETRIEVAL")
    overlap = np.mean([np.intersect1d(a[a >= 0], b).size / 10 for a, b in zip(*lists, strict=True)])
    return overlap, float(np.mean((lists[0] == lists[1]).all(axis=1))), *seconds


def print_agreement(path: Path, seed: int, n: int = 200) -> None:
    """How far retrieval's answers are from the dense path's: at the index's stored nprobe, and
    with nprobe raised (is a gap the index's recall or the retrieval itself?)."""
    from recsys.bundle_arrays import load_npz
    from recsys.index import VectorIndex
    from recsys.ranking.base import Query
    from recsys.ranking.blend import BlendedRanker

    ranker = BlendedRanker.load(path / "ranker")
    histories = load_npz(path / "histories.npz")
    indptr, flat = histories["indptr"], histories["indices"]
    users = np.random.default_rng(seed).choice(indptr.size - 1, n, replace=False)
    queries = [Query(int(u), np.asarray(flat[indptr[u] : indptr[u + 1]])) for u in users]
    exclude = [q.history for q in queries]
    text = ranker.sources["text"]
    print(f"\n{n} known users (history as query and excluded), top-10 in one process:")
    print("| text index | top-10 overlap | identical lists | dense s | retrieval s |")
    print("|---|---|---|---|---|")
    stored = text.index.config
    for nprobe in (stored.nprobe, 512):
        config = stored.model_copy(update={"nprobe": nprobe, "use_gpu": "never"})
        text.index = VectorIndex.load(path / "ranker" / "text" / "items.faiss", config)
        overlap, same, dense_s, retrieval_s = top10_agreement(ranker, queries, exclude)
        print(
            f"| {text.index.factory} nprobe {nprobe} | {overlap:.4f} | {same:.3f} | "
            f"{dense_s:.1f} | {retrieval_s:.1f} |"
        )
