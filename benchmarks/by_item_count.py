"""Benchmark (diagnostic): the published bundle's NDCG@10 outside-in by how many interactions the
held-out item had in REST — 0 (a cold item: only text reaches it), 1, 2-4, 5 or more — and the
share of list slots each bucket's items take. Reads the lists `published_quality.py --keep DIR`
leaves (DIR/<variant>/<setting>/product-<r>/recommendations.csv, every setting and run found);
writes nothing. Per user, NDCG@10 is averaged over a setting's runs (as published_quality.py
does); each setting after the first is compared with the first, paired per user (all users:
t-test and Wilcoxon; each bucket: t-test).

    python benchmarks/by_item_count.py --keep DIR [--datasets ml-latest-small-sparse8 ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from common import SHARED, header
from outside_in import load_variant, read_recommendations
from peers import metrics

from recsys.evaluation.stats import paired_tests
from recsys.schema import ITEM_IDX

K = 10
BUCKETS = (("cold (0)", 0, 0), ("1", 1, 1), ("2-4", 2, 4), ("5+", 5, None))


def bucket_masks(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(label, (counts >= lo) & (hi is None or counts <= hi)) for label, lo, hi in BUCKETS]


def setting_lists(directory: Path) -> list[Path]:
    return sorted(directory.glob("product-*/recommendations.csv"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", help="default: every variant under --keep")
    parser.add_argument("--data-root", type=Path, default=SHARED)
    args = parser.parse_args(argv)
    header("published bundle outside-in, by the held-out item's interactions in REST")
    names = args.datasets or sorted(p.name for p in args.keep.iterdir() if p.is_dir())
    for name in names:
        variant = load_variant(args.data_root, name)
        rest_counts = np.bincount(
            variant.rest[ITEM_IDX].to_numpy(), minlength=variant.dataset.n_items
        )
        held = variant.test_round()  # users in user_idx order, one held-out item each
        masks = bucket_masks(rest_counts[np.concatenate(held.relevant)])
        print(f"\n=== {name}: {held.user_idx.size} held-out users ===")
        print("  users per bucket: " + ", ".join(f"{lab} {m.sum()}" for lab, m in masks))
        first = None
        for directory in sorted(p for p in (args.keep / name).iterdir() if p.is_dir()):
            lists = setting_lists(directory)
            if not lists:
                continue
            ndcg, slots = [], []
            for path in lists:
                ranked = read_recommendations(path, variant, held.user_idx, K)  # (n, K)
                ndcg.append(metrics(ranked, held)["ndcg"])  # the shared kernel
                slots.append(rest_counts[np.where(ranked >= 0, ranked, 0)][ranked >= 0])
            per_user = np.mean(ndcg, axis=0)  # (n,) averaged over runs
            slot_masks = bucket_masks(np.concatenate(slots))
            cells = []
            for (label, mask), (_, slot) in zip(masks, slot_masks, strict=True):
                cell = f"{label} {per_user[mask].mean():.4f} (slots {slot.mean():.0%})"
                if first is not None:
                    ratio = per_user[mask].mean() / max(first[mask].mean(), 1e-12)
                    t_p = paired_tests(first[mask], per_user[mask])["ttest"]
                    cell += f" x{ratio:.2f} p {t_p:.2g}"
                cells.append(cell)
            overall = f"all {per_user.mean():.4f}"
            if first is not None:
                ratio = per_user.mean() / max(first.mean(), 1e-12)
                tests = paired_tests(first, per_user)  # as published_quality.py's tables
                overall += (
                    f" x{ratio:.3f} (t-test p {tests['ttest']:.2g}, "
                    f"Wilcoxon p {tests['wilcoxon']:.2g})"
                )
            print(f"  {directory.name} ({len(lists)} runs): {overall}")
            print("    " + "; ".join(cells))
            first = per_user if first is None else first
    return 0


if __name__ == "__main__":
    sys.exit(main())
