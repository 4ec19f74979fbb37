"""Benchmark (issue 4): what the cold-item baselines of quality.py can reach, without any model.

On quality.py's cold-item round (10 % of the items, seeded, lose every interaction; each user's
cold interactions ranked among the cold items only) this prints, per dataset: a random order
(expected Recall@10), our popularity recommender (every cold count is 0, so it falls back to its
tie-break, item_idx = the catalog's id order), and an oracle that orders the cold items by their
held-out counts - the best any popularity order could do. Plus the rank correlation between a
cold item's id and its held-out count: how much the id order already knows. Fast (no training).

    python benchmarks/cold_bounds.py [--datasets ml-latest-small ml-100k]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (same split, metrics and Round as the quality benchmark)
from common import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-latest-small", "ml-100k"])
    parser.add_argument("--data-root", type=Path, default=quality.DATA_ROOT)
    args = parser.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())

    from recsys.config import SplitConfig
    from recsys.data import load_dataset
    from recsys.data.split import split_interactions
    from recsys.ranking.popularity import PopularityRecommender

    for name in args.datasets:
        ds = load_dataset(args.data_root / name)
        split = split_interactions(ds.interactions, SplitConfig(n_test=1, n_valid=1))
        cs = quality.cold_split(ds, split)
        bounds = quality.cold_bounds(cs, ds.n_items)
        popularity = PopularityRecommender.fit(cs.round.matrix)
        pop = quality.evaluate(popularity, cs.round, cs.allowed)["recall"].mean()
        users = len(cs.round.held.relevant)
        print(f"\n{name}: {cs.items.size} cold items, {users} users with cold interactions")
        print(f"  {'order of the cold items':44s} Recall@{quality.K}  vs id-order popularity")
        rows = [
            ("random (expected)", bounds["random order"]),
            ("popularity: ties by item_idx (id order)", pop),
            ("oracle: by held-out counts", bounds["oracle (held-out counts)"]),
        ]
        for label, recall in rows:
            print(f"  {label:44s} {recall:9.4f}  {recall / pop:5.2f}x")
        rho = bounds["spearman(-id, held-out count)"]
        print(f"  Spearman(lower id, more held-out interactions) = {rho:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
