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
from scipy import stats

from recsys.schema import ITEM_IDX, USER_IDX

K = 10
BUCKETS = (("cold (0)", 0, 0), ("1", 1, 1), ("2-4", 2, 4), ("5+", 5, None))


def bucket_masks(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(label, (counts >= lo) & (hi is None or counts <= hi)) for label, lo, hi in BUCKETS]


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Wilcoxon signed-rank p of the paired per-user values (1.0 where they never differ)."""
    return float(stats.wilcoxon(a, b).pvalue) if np.any(a != b) else 1.0


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
        test = variant.test.sort(USER_IDX)
        users, held = test[USER_IDX].to_numpy(), test[ITEM_IDX].to_numpy()
        masks = bucket_masks(rest_counts[held])
        print(f"\n=== {name}: {users.size} held-out users ===")
        print("  users per bucket: " + ", ".join(f"{lab} {m.sum()}" for lab, m in masks))
        first = None
        for directory in sorted(p for p in (args.keep / name).iterdir() if p.is_dir()):
            lists = setting_lists(directory)
            if not lists:
                continue
            ndcg, slots = [], []
            for path in lists:
                ranked = read_recommendations(path, variant, users, K)  # (n, K)
                hit = ranked == held[:, None]
                ndcg.append((hit / np.log2(np.arange(2, K + 2))).sum(axis=1))
                slots.append(rest_counts[np.where(ranked >= 0, ranked, 0)][ranked >= 0])
            per_user = np.mean(ndcg, axis=0)  # (n,) averaged over runs
            slot_masks = bucket_masks(np.concatenate(slots))
            cells = []
            for (label, mask), (_, slot) in zip(masks, slot_masks, strict=True):
                cell = f"{label} {per_user[mask].mean():.4f} (slots {slot.mean():.0%})"
                if first is not None:
                    ratio = per_user[mask].mean() / max(first[mask].mean(), 1e-12)
                    cell += (
                        f" x{ratio:.2f} p {stats.ttest_rel(per_user[mask], first[mask]).pvalue:.2g}"
                    )
                cells.append(cell)
            overall = f"all {per_user.mean():.4f}"
            if first is not None:
                ratio = per_user.mean() / max(first.mean(), 1e-12)
                t, w = stats.ttest_rel(per_user, first).pvalue, _wilcoxon(per_user, first)
                overall += f" x{ratio:.3f} (t-test p {t:.2g}, Wilcoxon p {w:.2g})"
            print(f"  {directory.name} ({len(lists)} runs): {overall}")
            print("    " + "; ".join(cells))
            first = per_user if first is None else first
    return 0


if __name__ == "__main__":
    sys.exit(main())
