"""Benchmark: top-10 for ALL users from one fitted LightFM — our batched matrix products vs the
per-user `LightFM.predict(user, all_items)` loop people usually write. Same model, same run, same
exclusions (the user's seen items); asserts both give the same top-10 (modulo score ties).

    python benchmarks/batch_topk.py --data /work/shared/datasets/ml-latest-small [--repeats 5]

Prints the command, the machine, users/s of each path and the ratio. Timings exclude the fit.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

import common
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from recsys.config import CollabConfig
from recsys.data.loaders import load_dataset
from recsys.ranking.collab import CollabRecommender

K = 10
TIE_TOLERANCE = 1e-4  # float32 dot products in two orders differ by ~1e-6; ties by less than this


def machine() -> str:
    blas = ", ".join(f"{p['internal_api']} {p['num_threads']} threads" for p in threadpool_info())
    return common.machine(f"BLAS: {blas}; numpy {np.__version__}")


def predict_loop(rec: CollabRecommender, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The per-user loop: one LightFM.predict call over all items per user, then top-k."""
    model = rec.model.lightfm
    items = np.arange(rec.n_items, dtype=np.int32)
    untrained = ~rec.model.item_trained  # the same exclusions our path applies
    ids = np.empty((seen.shape[0], K), dtype=np.int64)
    scores = np.empty((seen.shape[0], K), dtype=np.float32)
    for user in range(seen.shape[0]):
        row = model.predict(user, items, num_threads=1).astype(np.float32)  # (n_items,)
        row[seen.indices[seen.indptr[user] : seen.indptr[user + 1]]] = -np.inf
        row[untrained] = -np.inf
        top = np.argpartition(-row, K)[:K]
        top = top[np.argsort(-row[top], kind="stable")]
        ids[user], scores[user] = top, row[top]
    return ids, scores


def timed_rounds(paths: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple]:
    """Median wall time of each path and its last result. Paths alternate within every round, so
    load from other processes on a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(times[name])), results[name]) for name in paths}


def ours_one_thread(rec: CollabRecommender, users: np.ndarray, seen: sp.csr_matrix):
    with threadpool_limits(1, "blas"):  # the same single thread the loop's predict uses
        return rec.recommend_users(users, K, seen=seen)


def same_modulo_ties(
    rec: CollabRecommender, ours: np.ndarray, theirs: tuple[np.ndarray, np.ndarray]
) -> tuple[int, int]:
    """(users with identical id lists, users whose lists differ only among tied scores).
    Raises AssertionError for any other difference."""
    their_ids, their_scores = theirs
    identical = tied = 0
    for user in range(ours.shape[0]):
        if np.array_equal(ours[user], their_ids[user]):
            identical += 1
            continue
        # score our picks with LightFM's own numbers: they must be as good as its top-k
        row = rec.model.lightfm.predict(user, ours[user].astype(np.int32), num_threads=1)
        if not np.allclose(np.sort(row)[::-1], their_scores[user], atol=TIE_TOLERANCE):
            raise AssertionError(f"user {user}: top-{K} differ beyond ties: {ours[user]} vs "
                                 f"{their_ids[user]}")  # fmt: skip
        tied += 1
    return identical, tied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data directory (e.g. a MovieLens one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    args = parser.parse_args(argv)

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())
    dataset = load_dataset(args.data)
    seen = dataset.interaction_matrix()  # (n_users, n_items): fit on all of it, exclude it
    config = CollabConfig(fits=1)  # LightFM, WARP, defaults; one fit: LightFM.predict checks it
    start = time.perf_counter()
    rec = CollabRecommender.fit(seen, config)
    fit_s = time.perf_counter() - start
    n_users = dataset.n_users
    print(f"data: {dataset.source}: {n_users} users, {dataset.n_items} items, "
          f"{seen.nnz} interactions; LightFM {config.loss} {config.factors} factors "
          f"{config.epochs} epochs fitted in {fit_s:.1f}s")  # fmt: skip

    users = np.arange(n_users)
    runs = timed_rounds(
        {
            "loop": lambda: predict_loop(rec, seen),
            "ours1": lambda: ours_one_thread(rec, users, seen),
            "ours": lambda: rec.recommend_users(users, K, seen=seen),
        },
        args.repeats,
    )
    (loop_s, loop), (ours1_s, ours1), (ours_s, ours) = runs["loop"], runs["ours1"], runs["ours"]
    identical, tied = same_modulo_ties(rec, ours1[0], loop)
    same_all = np.array_equal(ours[0], ours1[0])

    print(f"top-{K} for all {n_users} users, seen excluded, median of {args.repeats} rounds:")
    print(f"  LightFM.predict loop (num_threads=1)   {n_users / loop_s:12,.0f} users/s  "
          f"({loop_s:.3f}s)")  # fmt: skip
    print(f"  ours, batched, 1 BLAS thread          {n_users / ours1_s:12,.0f} users/s  "
          f"({ours1_s:.3f}s)  {loop_s / ours1_s:6.1f}x the loop")  # fmt: skip
    print(f"  ours, batched, default BLAS threads   {n_users / ours_s:12,.0f} users/s  "
          f"({ours_s:.3f}s)  {loop_s / ours_s:6.1f}x the loop")  # fmt: skip
    print(
        f"same top-{K}: {identical} users identical, {tied} differ only among tied scores "
        f"(|diff| <= {TIE_TOLERANCE}); 1-thread and multi-thread ours identical: {same_all}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
