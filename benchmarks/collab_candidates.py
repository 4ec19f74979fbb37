"""Benchmark: collaborative candidates beside tuned ALS under the outside-in protocol. Reads
MovieLens directories (../shared/datasets); writes only the optional --json-out file.

Same split and scoring as benchmarks/published_quality.py and benchmarks/peers.py: each user's
newest interaction held out (TEST), the rest (REST) given to every method; a validation split
carved from REST (each user's newest REST interaction) tunes each method, which is then refitted
on all of REST and ranks every item for the test round (REST items excluded, NDCG@10 / Recall@10).

Methods: ALS tuned on peers.py's grid, refitted with --seeds; EASE (Steck 2019: B = I - P /
diag(P), P = (X^T X + lambda I)^-1, diag(B) = 0, scores = x_u B) with lambda tuned; item-kNN
(cosine, optional neighbour cut) and RP3beta (Paudel et al. 2017) with their parameters tuned.
EASE, item-kNN and RP3beta are deterministic (one fit). Paired t-test and Wilcoxon of each
against ALS on per-user NDCG@10 (ALS averaged over its seeds).

    python benchmarks/collab_candidates.py [--datasets ml-100k-sparse8 ...] [--seeds 0 1 2]
        [--threads 1] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "datasets"
if not DATA_ROOT.is_dir():
    DATA_ROOT = Path("/work/shared/datasets")
VARIANTS = ["ml-100k-sparse8", "ml-latest-small-sparse8", "ml-100k", "ml-latest-small"]
EASE_GRID = [1.0, 3.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
KNN_GRID = [{"neighbours": n, "shrink": s} for n in (20, 50, 100, 0) for s in (0.0, 10.0)]
RP3_GRID = [{"alpha": a, "beta": b} for a in (0.25, 0.5, 1.0) for b in (0.0, 0.2, 0.4, 0.6)]
Similarity = Callable[[sp.csr_matrix, dict], np.ndarray]  # X (n_users, n_items) -> (n_i, n_i)


def say(message: str) -> None:
    print(message, flush=True)


def ease_weights(x: sp.csr_matrix, params: dict) -> np.ndarray:
    """EASE item-item weights (n_items, n_items) float32; rows/columns of items without
    interactions are zero (they are never in a history and are masked at scoring)."""
    active = np.flatnonzero(x.getnnz(axis=0))  # (n_active,)
    xa = x[:, active]
    gram = (xa.T @ xa).toarray().astype(np.float64)  # (n_active, n_active)
    gram[np.diag_indices_from(gram)] += params["lambda"]
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]  # B_ij = -P_ij / P_jj
    np.fill_diagonal(b, 0.0)
    out = np.zeros((x.shape[1], x.shape[1]), dtype=np.float32)
    out[np.ix_(active, active)] = b
    return out


def knn_weights(x: sp.csr_matrix, params: dict) -> np.ndarray:
    """Cosine item-item similarity with shrinkage; each column keeps its top `neighbours`
    (0: all). (n_items, n_items) float32, diagonal 0."""
    gram = (x.T @ x).toarray().astype(np.float64)  # (n_items, n_items) co-counts
    norms = np.sqrt(np.diag(gram))  # (n_items,)
    sim = gram / (np.outer(norms, norms) + params["shrink"] + 1e-12)
    np.fill_diagonal(sim, 0.0)
    return keep_top(sim, params["neighbours"]).astype(np.float32)


def rp3_weights(x: sp.csr_matrix, params: dict) -> np.ndarray:
    """RP3beta: the product's recsys.ranking.neighbors.rp3beta_weights with no top-n cut
    (every neighbour kept), as dense (n_items, n_items) float32."""
    from recsys.config import NeighborsConfig
    from recsys.ranking.neighbors import rp3beta_weights

    config = NeighborsConfig(
        top_n=x.shape[1], alpha=params["alpha"], beta=params["beta"], recency=1.0
    )
    return rp3beta_weights(x, config).toarray()


def keep_top(sim: np.ndarray, neighbours: int) -> np.ndarray:
    """Zero all but the `neighbours` largest entries of each column (0: keep all)."""
    if neighbours <= 0 or neighbours >= sim.shape[0]:
        return sim
    cut = np.partition(sim, -neighbours, axis=0)[-neighbours]  # (n_items,) per-column threshold
    return np.where(sim >= cut[None, :], sim, 0.0)


class ItemItem:
    """scores = x_history (binary) @ W; items without training interactions score -inf."""

    def __init__(self, weights: np.ndarray, train: sp.csr_matrix, tiebreak: bool):
        self.weights, self.n_items = weights, weights.shape[0]
        popularity = train.getnnz(axis=0).astype(np.float32)  # (n_items,)
        self.trained = popularity > 0
        # --pop-tiebreak: items the history never co-occurred with (score 0) rank by popularity
        # rather than by item index; 1e-6 stays below any real weight difference here
        self.prior = popularity / popularity.max() * 1e-6 if tiebreak else None

    def recommend(self, queries, k: int, exclude):
        from recsys.ranking.base import apply_exclusions, top_k

        rows = np.repeat(np.arange(len(queries)), [q.history.size for q in queries])
        cols = np.concatenate([q.history for q in queries]) if queries else np.zeros(0, int)
        x = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                          shape=(len(queries), self.n_items))  # fmt: skip
        x.data[:] = 1.0
        scores = np.asarray(x @ self.weights, dtype=np.float32)  # (n_queries, n_items)
        if self.prior is not None:
            scores += self.prior[None, :]
        scores[:, ~self.trained] = -np.inf
        apply_exclusions(scores, exclude, None)
        return top_k(scores, k)


def tune_item_item(
    rounds, name: str, build: Similarity, grid: list[dict], tiebreak: bool
) -> tuple[dict, float]:
    """The grid point with the best validation NDCG@10 (fit on REST minus validation)."""
    from peers import K, matrix, score

    train = matrix(rounds.train, rounds.n_users, rounds.n_items)
    best, best_ndcg = None, -1.0
    for params in grid:
        ndcg = score(ItemItem(build(train, params), train, tiebreak), rounds.valid)["ndcg"].mean()
        say(f"    {name} {params}: valid NDCG@{K} {ndcg:.4f}")
        if ndcg > best_ndcg:
            best, best_ndcg = params, ndcg
    return best, best_ndcg


def item_item_test(variant, rounds, build: Similarity, params: dict, tiebreak: bool) -> dict:
    from peers import matrix, score

    rest = matrix(variant.rest, rounds.n_users, rounds.n_items)
    return score(ItemItem(build(rest, params), rest, tiebreak), rounds.test)


def run_variant(name: str, args: argparse.Namespace) -> dict:
    from outside_in import load_variant
    from peers import ALS_GRID, Rounds, collab_seeds, tune_collab

    say(f"\n=== {name} ===")
    variant = load_variant(args.data_root, name)
    rounds = Rounds.of(variant)
    say(f"  {rounds.n_items} items, {rounds.test.user_idx.size} test users, "
        f"REST {variant.rest.height} interactions")  # fmt: skip
    start = time.perf_counter()
    config = tune_collab(rounds, "als", ALS_GRID, args.threads, say)
    results = {"ALS": collab_seeds(variant, rounds, config, args.seeds)}
    chosen = {"ALS": config.model_dump(include=set(ALS_GRID[0]))}
    seconds = {"ALS": time.perf_counter() - start}
    for label, build, grid in (
        ("EASE", ease_weights, [{"lambda": v} for v in EASE_GRID]),
        ("item-kNN", knn_weights, KNN_GRID),
        ("RP3beta", rp3_weights, RP3_GRID),
    ):
        start = time.perf_counter()
        chosen[label], _ = tune_item_item(rounds, label, build, grid, args.pop_tiebreak)
        results[label] = [item_item_test(variant, rounds, build, chosen[label], args.pop_tiebreak)]
        seconds[label] = time.perf_counter() - start
    table = compare(results)
    print_table(name, table, chosen, seconds)
    return {"table": table, "chosen": chosen, "seconds": seconds}


def compare(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean ± sd over seeds, ratio to ALS and paired tests against ALS (per-user NDCG@10)."""
    from recsys.evaluation.stats import paired_tests

    als = np.mean([m["ndcg"] for m in results["ALS"]], axis=0)  # (n_users,)
    table = {}
    for method, runs in results.items():
        row = {}
        for metric in ("ndcg", "recall"):
            means = np.array([m[metric].mean() for m in runs])
            row[metric] = float(means.mean())
            row[f"{metric}_sd"] = float(means.std(ddof=1)) if means.size > 1 else 0.0
            row[f"{metric}_per_seed"] = [round(float(v), 5) for v in means]
        if method != "ALS":
            per_user = np.mean([m["ndcg"] for m in runs], axis=0)
            tests = paired_tests(als, per_user)
            row.update(ratio_to_als=float(per_user.mean() / als.mean()),
                       ttest_p=tests["ttest"], wilcoxon_p=tests["wilcoxon"])  # fmt: skip
        table[method] = row
    return table


def print_table(name: str, table: dict, chosen: dict, seconds: dict) -> None:
    say(f"\n{name}: every method fit on REST, test = each user's newest interaction")
    say(f"  {'method':<10}{'NDCG@10':>18}{'Recall@10':>18}{'/ALS':>8}{'t-test p':>10}"
        f"{'Wilcoxon p':>11}{'tune+fit s':>11}  chosen")  # fmt: skip
    for method, row in table.items():
        cells = [f"  {method:<10}"]
        for metric in ("ndcg", "recall"):
            sd = f" ± {row[f'{metric}_sd']:.4f}" if len(row[f"{metric}_per_seed"]) > 1 else ""
            cells.append(f"{row[metric]:.4f}{sd}".rjust(18))
        if "ttest_p" in row:
            cells.append(f"{row['ratio_to_als']:>8.3f}{row['ttest_p']:>10.2g}"
                         f"{row['wilcoxon_p']:>11.2g}")  # fmt: skip
        else:
            cells.append(" " * 29)
        cells.append(f"{seconds[method]:>11.1f}  {chosen[method]}")
        say("".join(cells))


def limit_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=VARIANTS, default=VARIANTS[:2])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pop-tiebreak", action="store_true", help="item-item ties (score 0) by popularity"
    )
    parser.add_argument("--json-out", type=Path, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    if args.json_out is not None and args.json_out.resolve().is_relative_to(REPO):
        raise SystemExit(f"--json-out {args.json_out}: inside the repository; choose another")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import header, machine

    header("collaborative candidates beside tuned ALS, outside-in split")
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "datasets": {}}
    start = time.perf_counter()
    for name in args.datasets:
        report["datasets"][name] = run_variant(name, args)
    say(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({**report, "machine": machine()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
