"""Benchmark (evaluation stage): the metrics kernel and the A/B statistics, each beside its peer.

1. per_user_metrics (ndcg, recall, mrr, map, hit_rate @10) vs ranx (numba, JIT warmed up first)
   on the same synthetic users; also checks the two agree (|relevant| <= k, so conventions match).
2. bootstrap_means (counts @ values, chunked) vs the usual loop of index-gather resamples.
3. With --data: a full offline A/B (evaluate_ab + render_html) on a MovieLens directory,
   popularity (A) vs "popular among users who also had your last item" (B), leave-last-one-out.

    .venv/bin/python benchmarks/eval_kernel.py [--users 100000] [--data DIR]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time

import common
import numpy as np
import polars as pl

from recsys.config import EvalConfig, SplitConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.evaluation.stats import bootstrap_means

K = 10
METRICS = ("ndcg", "recall", "mrr", "map", "hit_rate")


def machine() -> str:
    return common.machine(f"numpy {np.__version__}")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic(n_users: int, n_items: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    keys = rng.random((n_users, 200))  # distinct items per list: a random 10 of a 200-item window
    offset = rng.integers(0, n_items - 200, n_users)[:, None]
    ranked = (np.argsort(keys, axis=1)[:, :K] + offset).astype(np.int64)  # (n, K)
    sizes = rng.integers(1, K + 1, n_users)
    relevant = [
        off + rng.choice(200, s, replace=False) for off, s in zip(offset[:, 0], sizes, strict=True)
    ]
    return ranked, relevant


def bench_metrics(n_users: int, repeats: int) -> None:
    from ranx import Qrels, Run, evaluate

    ranked, relevant = synthetic(n_users, 20_000)
    ours_t = best_of(lambda: per_user_metrics(ranked, relevant, K, METRICS), repeats)
    ours = per_user_metrics(ranked, relevant, K, METRICS)
    qid = [f"q{u:07d}" for u in range(n_users)]
    Qrels({"q": {"d1": 1}}), Run({"q": {"d1": 1.0}})  # JIT warm-up of the typed dicts, not timed
    build = time.perf_counter()
    qrels = Qrels({q: {f"d{i}": 1 for i in r} for q, r in zip(qid, relevant, strict=True)})
    run = Run(
        {
            q: {f"d{i}": float(K - j) for j, i in enumerate(row)}
            for q, row in zip(qid, ranked, strict=True)
        }
    )
    build = time.perf_counter() - build
    names = [f"{m}@{K}" for m in METRICS]
    evaluate(qrels, run, names, return_mean=False)  # JIT warm-up, not timed
    ranx_t = best_of(lambda: evaluate(qrels, run, names, return_mean=False), repeats)
    theirs = evaluate(qrels, run, names, return_mean=False)
    diff = max(
        np.abs(np.asarray(theirs[n]) - ours[m]).max() for m, n in zip(METRICS, names, strict=True)
    )
    print(f"\n[metrics] {n_users} users, 5 metrics @{K}, best of {repeats}")
    print(f"  ours per_user_metrics (numpy arrays in)  {ours_t:8.3f} s  1.00x")
    print(
        f"  ranx evaluate (Qrels/Run built, warm)    {ranx_t:8.3f} s  {ranx_t / ours_t:.2f}x ours"
    )
    print(f"  ranx Qrels+Run from dicts (warm)         {build:8.3f} s  {build / ours_t:.2f}x ours")
    print(f"  max |ours - ranx| over all users/metrics {diff:.2e}")


def bench_bootstrap(n_users: int, n_boot: int) -> None:
    rng = np.random.default_rng(1)
    values = rng.random((n_users, 10))  # 5 metrics x 2 variants, as compare() resamples them

    def gather_loop() -> np.ndarray:
        loop_rng = np.random.default_rng(0)
        return np.stack(
            [values[loop_rng.integers(0, n_users, n_users)].mean(0) for _ in range(n_boot)]
        )

    ours_t = best_of(lambda: bootstrap_means(values, n_boot, seed=0), 1)
    loop_t = best_of(gather_loop, 1)
    se = values.std(0) / np.sqrt(n_users)
    spread = bootstrap_means(values, n_boot, seed=0).std(0) / se
    print(f"\n[bootstrap] {n_users} users x 10 columns, {n_boot} resamples")
    print(f"  ours bootstrap_means (counts @ values)   {ours_t:8.3f} s  1.00x")
    print(
        f"  loop of values[idx].mean(0)              {loop_t:8.3f} s  {loop_t / ours_t:.2f}x ours"
    )
    print(f"  bootstrap SD / analytic SE: {spread.min():.3f} .. {spread.max():.3f} (expect ~1)")


def bench_offline_ab(data_dir: str) -> None:
    from recsys.data.loaders import load_dataset
    from recsys.data.split import split_interactions
    from recsys.evaluation.evaluate import EvalInput, evaluate_ab
    from recsys.evaluation.report import render_html
    from recsys.schema import ITEM_IDX, USER_IDX

    dataset = load_dataset(data_dir)
    split = split_interactions(dataset.interactions, SplitConfig(n_test=1, n_valid=0))
    train = dataset.interaction_matrix(split.train).tocsr()  # (n_users, n_items)
    train.data[:] = 1.0
    users = split.test[USER_IDX].to_numpy()
    held = split.test[ITEM_IDX].to_numpy()
    keep = np.diff(train.indptr)[users] >= 1  # users with >= 2 interactions
    users, held = users[keep], held[keep]
    popularity = np.asarray(train.sum(axis=0)).ravel()  # (n_items,)
    last = split.train.group_by(USER_IDX).agg(pl.col(ITEM_IDX).last())
    last_item = dict(zip(last[USER_IDX].to_list(), last[ITEM_IDX].to_list(), strict=True))
    co = (train.T @ train).tocsr()  # (n_items, n_items) co-occurrence
    seen = train[users]
    start = time.perf_counter()
    score_a = np.tile(popularity, (len(users), 1)).astype(np.float64)
    score_b = co[[last_item[u] for u in users]].toarray() + 1e-6 * popularity
    for scores in (score_a, score_b):
        scores[seen.nonzero()] = -np.inf
    ranked_a = np.argsort(-score_a, axis=1, kind="stable")[:, :K]
    ranked_b = np.argsort(-score_b, axis=1, kind="stable")[:, :K]
    data = EvalInput([np.array([i]) for i in held], np.diff(train.indptr)[users], popularity)
    scored = time.perf_counter()
    result = evaluate_ab(ranked_a, ranked_b, data, EvalConfig(), names=("popularity", "co-occur"))
    evaluated = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        render_html(result.comparison, result.verdict, result.extras(data=data_dir), out)
    rendered = time.perf_counter()
    print(f"\n[offline A/B] {data_dir}: {len(users)} users, {dataset.n_items} items")
    for metric in ("ndcg", "recall"):
        c = result.comparison.cell(metric)
        print(
            f"  {metric}@{K}: popularity {c.mean_a:.4f}  co-occur {c.mean_b:.4f}  "
            f"lift {c.lift:+.1%} [{c.lift_ci[0]:+.1%}, {c.lift_ci[1]:+.1%}]  p {c.p_adjusted:.2g}"
        )
    print(f"  verdict: {result.verdict.decision.upper()} ({len(result.comparison.cells)} cells)")
    print(
        f"  scoring both variants {scored - start:6.2f} s | evaluate_ab {evaluated - scored:6.2f} s"
        f" ({(evaluated - scored) / (scored - start):.2f}x scoring) | render_html "
        f"{rendered - evaluated:6.2f} s"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="a MovieLens directory for the offline A/B run")
    args = parser.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())
    bench_metrics(args.users, args.repeats)
    bench_bootstrap(args.users, args.bootstrap)
    if args.data:
        bench_offline_ab(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
