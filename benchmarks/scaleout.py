"""Benchmark (issue 20): scale-out figures. Section `index`: the index tiers of `auto` over >= 1M
generated clustered vectors; section `gpu-index`: the IVF-PQ tier's build on faiss-gpu; section
`embed`: item embedding on Ray Data vs in-process (benchmarks/scaleout_embed.py); section `api`:
gunicorn with 4 workers on a generated 1M-item bundle, arrays memory-mapped vs copied
(benchmarks/scaleout_api.py).

Reads nothing (the vectors are generated, seeded); writes index files to a temp folder only.

    .venv/bin/python benchmarks/scaleout.py --items 1000000 --threads 1

Vectors: a Gaussian mixture on the unit sphere (dim 128 = the towers' default; uneven cluster
sizes), queries are fresh draws from the same mixture, ground truth is brute force. Flat, HNSW32
and the IVF-PQ tier (IndexRefineFlat over IndexIVFPQ) are each built through VectorIndex.build
and measured in this one run: build time (the nightly's index step, with its 1000-query recall
check), bytes per vector of the index file, private and file-backed resident bytes per vector of
a worker that memory-maps the file, recall@10 (IVF-PQ before and after exact re-rank), and search
latency p50/p99 per single query and per batch, through VectorIndex.search.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from threadpoolctl import threadpool_limits

from recsys.config import IndexConfig
from recsys.index import VectorIndex
from recsys.index.backend import faiss

K = 10
TIERS = {"Flat": "Flat", "HNSW32": "HNSW32", "IVF-PQ + re-rank": "ivfpq"}
GRIDS = {  # search parameters swept on the built index (no rebuild): tier -> settings
    "ivfpq": [{"nprobe": p, "rerank_factor": r} for p in (8, 16, 32, 64) for r in (1, 4, 10, 20)],
    "HNSW32": [{"ef_search": ef} for ef in (64, 128, 256, 512)],
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=1.0, help="within-cluster noise norm")
    parser.add_argument("--queries", type=int, default=1000, help="ground-truth query sample")
    parser.add_argument("--batch", type=int, default=64, help="queries per batched search")
    parser.add_argument("--threads", type=int, default=1, help="FAISS and BLAS threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="index,gpu-index", help="index,gpu-index,embed,api")
    parser.add_argument("--texts", type=int, default=4000, help="embed: generated documents")
    parser.add_argument("--ray-workers", type=int, default=2, help="embed: Ray Data actors")
    parser.add_argument("--skip", default="", help="comma-separated tiers to leave out")
    parser.add_argument("--api-users", type=int, default=20_000, help="api: users in the bundle")
    parser.add_argument("--api-workers", type=int, default=4, help="api: gunicorn workers")
    parser.add_argument("--api-workdir", help="api: build into / reuse this work directory")
    parser.add_argument("--connections", type=int, default=8, help="api: client connections")
    parser.add_argument("--seconds", type=float, default=30.0, help="api: load per mode")
    parser.add_argument(
        "--api-compare",
        choices=["mmap", "retrieval"],
        default="mmap",
        help="api: copied vs mapped arrays, or dense candidates vs retrieval (both mapped)",
    )
    return parser.parse_args(argv)


def mixture(dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit centres (clusters, dim) and uneven cluster probabilities (clusters,): lognormal
    weights, as item categories are uneven."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, clusters)
    return centres, weights / weights.sum()


def clustered_sphere(n: int, spread: float, mix: tuple, seed: int) -> np.ndarray:
    """(n, dim) float32 unit rows drawn from the mixture: centre + isotropic noise of norm
    ~spread, renormalised. Built in chunks so the float64 noise never exceeds ~100 MB."""
    centres, probabilities = mix
    dim = centres.shape[1]
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(centres), size=n, p=probabilities)  # (n,)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = labels[start : start + 100_000]
        noise = rng.standard_normal((part.size, dim)) * (spread / np.sqrt(dim))
        block = centres[part] + noise
        out[start : start + part.size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) item ids of the exact top-k by inner product, in blocks of 64 queries."""
    truth = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ items.T  # (64, n_items)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        truth[start : start + 64] = np.take_along_axis(top, order, axis=1)
    return truth


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def latencies(index: VectorIndex, queries: np.ndarray, batch: int, **kwargs) -> dict:
    """Single-query and batched search: p50/p99 ms per call, the single-query results, q/s."""
    single, found = [], []
    for row in queries:
        start = time.perf_counter()
        ids, _ = index.search(row[None], K, **kwargs)
        single.append(time.perf_counter() - start)
        found.append(ids[0])
    batched = []
    for start in range(0, len(queries), batch):
        t0 = time.perf_counter()
        index.search(queries[start : start + batch], K, **kwargs)
        batched.append(time.perf_counter() - t0)
    ms = 1000 * np.asarray(single), 1000 * np.asarray(batched)
    return {
        "found": np.stack(found),
        "single_p50": np.percentile(ms[0], 50),
        "single_p99": np.percentile(ms[0], 99),
        "batch_p50": np.percentile(ms[1], 50),
        "batch_p99": np.percentile(ms[1], 99),
        "batch_qps": len(queries) / sum(batched),
    }


RESIDENT = """
import json, sys, numpy as np
from pathlib import Path
def status():
    rows = Path("/proc/self/status").read_text().splitlines()
    return {r.split(":")[0]: int(r.split()[1]) * 1024 for r in rows if r.startswith("Rss")}
from recsys.index import VectorIndex
queries = np.load(sys.argv[2])
before = status()
index = VectorIndex.load(sys.argv[1], mmap=sys.argv[3] == "mmap")
for row in queries:
    index.search(row[None], 10)
after = status()
print(json.dumps({k: after[k] - before[k] for k in ("RssAnon", "RssFile")}))
"""


def resident(path: Path, queries_path: Path, mode: str) -> dict[str, int]:
    """Resident bytes a fresh worker process adds by loading `path` and serving the queries:
    RssAnon (private to it) and RssFile (file pages, shared with every process mapping them)."""
    out = subprocess.run(
        [sys.executable, "-c", RESIDENT, str(path), str(queries_path), mode],
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_tier(name, factory, items, queries, truth, args, folder) -> dict:
    """Build one tier, then every figure of its row."""
    config = IndexConfig(factory=factory, use_gpu="never")
    start = time.perf_counter()
    index = VectorIndex.build(items, config)
    row = {"tier": name, "type": index.index_type, "factory": index.factory}
    row["params"] = f"nprobe {config.nprobe}, rerank_factor {config.rerank_factor}"
    if factory == "HNSW32":
        row["params"] = f"ef_search {config.ef_search}"
    row["build_s"] = time.perf_counter() - start
    row["build_recall"] = index.build_recall
    path = folder / f"{factory}.faiss"
    index.save(path)
    row["file_bpv"] = path.stat().st_size / len(items)
    row.update(latencies(index, queries, args.batch))
    row["recall"] = recall(row.pop("found"), truth)
    if factory == "ivfpq":
        pq_only = index.search(queries, K, rerank=False)[0]
        row["recall_pq_only"] = recall(pq_only, truth)
    if factory in GRIDS:
        row["grid"] = parameter_grid(index, GRIDS[factory], queries, truth, args.batch)
    del index
    gc.collect()
    for mode in ("copy", "mmap"):
        used = resident(path, folder / "queries.npy", mode)
        row[f"{mode}_anon_bpv"] = used["RssAnon"] / len(items)
        row[f"{mode}_file_bpv"] = used["RssFile"] / len(items)
    path.unlink()
    return row


def parameter_grid(index: VectorIndex, grid: list[dict], queries, truth, batch) -> list[tuple]:
    """(settings, recall@10, batched q/s) for each setting, on the same built index (each is
    written into the shared FAISS object: the caller drops `index` after)."""
    rows = []
    for settings in grid:
        view = VectorIndex(index.index, index.factory, IndexConfig(**settings))
        start = time.perf_counter()
        found = np.concatenate(
            [view.search(queries[s : s + batch], K)[0] for s in range(0, len(queries), batch)]
        )
        qps = len(queries) / (time.perf_counter() - start)
        rows.append((settings, recall(found, truth), qps))
    return rows


def print_rows(rows: list[dict], n: int, batch: int) -> None:
    print(f"\n## Index tiers over {n:,} vectors (recall@10 vs brute force; latency in ms)")
    print(
        "| tier | FAISS type | build s | file B/vec | copy: private B/vec | mmap: private / "
        "file-backed B/vec | recall@10 | single p50 / p99 | "
        f"batch of {batch} p50 / p99 | batched q/s |"
    )
    print("|---" * 10 + "|")
    for r in rows:
        rec = f"{r['recall']:.4f}"
        if "recall_pq_only" in r:
            rec += f" (PQ only: {r['recall_pq_only']:.4f})"
        print(
            f"| {r['tier']} | {r['type']} | {r['build_s']:.1f} | {r['file_bpv']:.0f} | "
            f"{r['copy_anon_bpv']:.0f} | {r['mmap_anon_bpv']:.0f} / {r['mmap_file_bpv']:.0f} | "
            f"{rec} | {r['single_p50']:.2f} / {r['single_p99']:.2f} | "
            f"{r['batch_p50']:.1f} / {r['batch_p99']:.1f} | {r['batch_qps']:.0f} |"
        )
    for r in rows:
        params = "" if r["tier"] == "Flat" else f" ({r['params']}, the defaults)"
        print(
            f"{r['tier']}: factory {r['factory']}{params}, "
            f"build-time recall@10 {r['build_recall']:.4f}"
        )
    for r in rows:
        if "grid" in r:
            keys = list(r["grid"][0][0])
            print(f"\n{r['tier']}: search parameters on the same index (batches of {batch})")
            print(
                f"| {' | '.join(keys)} | recall@10 | batched q/s |\n"
                + "|---" * (len(keys) + 2)
                + "|"
            )
            for settings, rec, qps in r["grid"]:
                print(f"| {' | '.join(str(settings[k]) for k in keys)} | {rec:.4f} | {qps:.0f} |")


def index_section(items, queries, truth, args) -> None:
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        folder = Path(tmp)
        np.save(folder / "queries.npy", queries[:200])
        rows = []
        for name, factory in TIERS.items():
            if name not in skip:
                rows.append(measure_tier(name, factory, items, queries, truth, args, folder))
                print(f"... {name} done", file=sys.stderr, flush=True)
    print_rows(rows, len(items), args.batch)


def gpu_index_section(items, queries, truth) -> None:
    """The IVF-PQ tier's build with k-means on the GPU vs on the CPU, same vectors."""
    print("\n## GPU: IVF-PQ tier build on faiss-gpu")
    if not hasattr(faiss, "StandardGpuResources"):
        print(f"did not run: faiss {faiss.__version__} has no GPU support (faiss-cpu)")
        return
    if faiss.get_num_gpus() == 0:
        print(f"did not run: faiss {faiss.__version__} reports 0 GPUs")
        return
    for use_gpu in ("auto", "never"):
        start = time.perf_counter()
        index = VectorIndex.build(items, IndexConfig(factory="ivfpq", use_gpu=use_gpu))
        seconds = time.perf_counter() - start
        found = index.search(queries, K)[0]
        where = "GPU k-means" if use_gpu == "auto" else "CPU only"
        print(f"{where}: build {seconds:.1f} s, recall@10 {recall(found, truth):.4f}")
        del index
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    common.header("scale-out (issue 20)")
    print(f"faiss {faiss.__version__}, {args.threads} FAISS/BLAS thread(s); numpy {np.__version__}")
    sections = set(args.sections.split(","))
    if "api" in sections:
        from scaleout_api import api_section

        api_section(args)
    if "embed" in sections:
        from scaleout_embed import embed_section

        embed_section(args.texts, args.threads, args.ray_workers, args.seed)
    if not sections & {"index", "gpu-index"}:
        return 0
    start = time.perf_counter()
    mix = mixture(args.dim, args.clusters, args.seed)
    items = clustered_sphere(args.items, args.spread, mix, args.seed + 1)
    queries = clustered_sphere(args.queries, args.spread, mix, args.seed + 2)  # not indexed
    truth = exact_top_k(items, queries, K)
    seconds = time.perf_counter() - start
    print(
        f"data: {args.items:,} x {args.dim}, {args.clusters} clusters, spread {args.spread}; "
        f"{args.queries} queries; generated + ground truth in {seconds:.0f} s"
    )
    if "index" in sections:
        index_section(items, queries, truth, args)
    if "gpu-index" in sections:
        gpu_index_section(items, queries, truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
