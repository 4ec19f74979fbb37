"""Benchmark (diagnostic): what each source of a published bundle scores alone, and the best blend
weights on a finer grid than the nightly's, on the nightly's own validation split. Reads a data
directory and a bundle (e.g. from `published_quality.py --keep DIR`); writes nothing.

The split is the nightly's (the bundle's config.json); the bundle's evaluated ranker
(`ranker-evaluated/`, fitted on the split's training part) ranks the validation queries (train
histories, train items excluded) as learn_weights does; printed: the best grid points by mean
NDCG@k, each source alone, and the best point with that source at weight 0.

    python benchmarks/blend_probe.py --data DIR --bundle BUNDLE_DIR [--grid 6 11] [--k 10]
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recsys.config import PipelineConfig
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.pipeline.fit import eval_set
from recsys.ranking.blend import BlendedRanker
from recsys.training.blend_weights import _grid_ndcg, simplex_grid


def show(names: list[str], weights: np.ndarray) -> str:
    return " ".join(f"{n} {w:.1f}" for n, w in zip(names, weights, strict=True))


def probe(ranker: BlendedRanker, valid, points: int, k: int, what: str = "valid") -> None:
    """Print the grid's best points, the best without each source, and each source alone."""
    names = ranker.names
    grid = simplex_grid(len(names), points)  # (G, S)
    ndcg = _grid_ndcg(ranker, list(valid.queries), valid.relevant, valid.exclude, grid, k)
    mean = ndcg.mean(axis=1)  # (G,)
    print(f"grid {points} points per weight ({grid.shape[0]} blends), {what} NDCG@{k}:")
    for g in np.argsort(-mean, kind="stable")[:5]:
        print(f"  best    {show(names, grid[g])}: {mean[g]:.4f}")
    for s, name in enumerate(names):
        without = np.flatnonzero(grid[:, s] == 0)
        g = without[np.argmax(mean[without])]
        alone = int(np.flatnonzero(grid[:, s] == 1.0)[0])
        print(f"  {name:<10} alone {mean[alone]:.4f}; best without it {mean[g]:.4f} "
              f"({show(names, grid[g])})")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--grid", type=int, nargs="+", default=[6, 11])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--variant", help="also probe the outside-in test round of this variant")
    args = parser.parse_args(argv)
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {platform.machine()}, {platform.python_version()}")
    config = PipelineConfig.model_validate_json((args.bundle / "config.json").read_text())
    dataset = load_dataset(args.data, config.data)
    split = split_interactions(dataset.interactions, config.split)
    valid = eval_set([split.train], split.valid, dataset.n_users)
    ranker = BlendedRanker.load(args.bundle / "ranker-evaluated")
    print(f"sources {ranker.names}; {len(valid.queries)} validation users")
    for points in args.grid:
        probe(ranker, valid, points, args.k)
    if args.variant:
        outside_in(args, dataset)
    return 0


def outside_in(args: argparse.Namespace, dataset) -> None:
    """The probe on the outside-in test round, with the published (refit) ranker; the test
    frame is mapped from the variant's ids into the product's (the contract dir's) indices."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from outside_in import load_variant
    from published_quality import DATA_ROOT

    from recsys.schema import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

    variant = load_variant(DATA_ROOT, args.variant)
    vds = variant.dataset
    test = (
        variant.test.join(vds.users.select(USER_IDX, USER_ID), on=USER_IDX)
        .join(vds.items.select(ITEM_IDX, ITEM_ID), on=ITEM_IDX)
        .drop(USER_IDX, ITEM_IDX)
        .join(dataset.users.select(USER_IDX, USER_ID), on=USER_ID)
        .join(dataset.items.select(ITEM_IDX, ITEM_ID), on=ITEM_ID)
    )
    if test.height != variant.test.height:
        raise SystemExit(f"{args.data} is not {args.variant}'s REST: test ids do not all map")
    round_ = eval_set([dataset.interactions], test, dataset.n_users)
    ranker = BlendedRanker.load(args.bundle / "ranker")
    learned = np.array([[ranker.weights.default[n] for n in ranker.names]])
    queries = list(round_.queries)
    ndcg = _grid_ndcg(ranker, queries, round_.relevant, round_.exclude, learned, args.k).mean()
    weights = show(ranker.names, learned[0])
    print(f"outside-in test ({args.variant}, {len(queries)} users), published ranker: "
          f"learned weights {weights}: NDCG@{args.k} {ndcg:.4f}")  # fmt: skip
    for points in args.grid:
        probe(ranker, round_, points, args.k, what="outside-in test")


if __name__ == "__main__":
    sys.exit(main())
