"""Evaluation stage: user segments for A/B reports. Reads history lengths, held-out items and
training item popularity; writes {segment name: bool mask (n_users,)}.

Segments may overlap across families (a user is in one history segment, one held-out-item
segment and one popularity segment); within a family they partition the users.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.ranking.segments import segment_labels, segment_of

HISTORY_WORDS = ("cold", "light", "warm", "heavy")  # names for the default 3 bounds / 4 segments
POPULARITY_BUCKETS = ("head", "mid", "tail")  # thirds of the training interactions


def history_segments(history_lengths: np.ndarray, bounds: Sequence[int]) -> dict[str, np.ndarray]:
    """Users by training history length; bounds [0, 5, 50] -> "history 0 (cold)",
    "history 1-5 (light)", "history 6-50 (warm)", "history 51+ (heavy)". Empty segments dropped."""
    lengths = np.asarray(history_lengths, dtype=np.int64)
    labels = segment_labels(bounds)
    seg = segment_of(lengths, bounds)  # (n,)
    out = {}
    for i, label in enumerate(labels):
        word = f" ({HISTORY_WORDS[i]})" if len(labels) == len(HISTORY_WORDS) else ""
        mask = seg == i
        if mask.any():
            out[f"history {label}{word}"] = mask
    return out


def heldout_item_segments(
    relevant: Sequence[np.ndarray], item_popularity: np.ndarray
) -> dict[str, np.ndarray]:
    """Users whose held-out items are all cold (no training interactions), all warm, or mixed."""
    items, starts, sizes = _flatten(relevant)
    is_cold = np.asarray(item_popularity)[items] == 0  # (m,)
    cold_share = np.add.reduceat(is_cold.astype(np.float64), starts) / sizes  # (n,)
    masks = {
        "held-out item cold": cold_share == 1.0,
        "held-out item warm": cold_share == 0.0,
        "held-out items mixed": (cold_share > 0.0) & (cold_share < 1.0),
    }
    return {name: mask for name, mask in masks.items() if mask.any()}


def popularity_buckets(item_popularity: np.ndarray) -> np.ndarray:
    """Bucket per item (n_items,): 0 head, 1 mid, 2 tail. Items are sorted by popularity and cut
    where the cumulative share of training interactions passes 1/3 and 2/3; ties share a bucket
    boundary by rank, and items without interactions are always tail."""
    pop = np.asarray(item_popularity, dtype=np.float64)
    order = np.argsort(-pop, kind="stable")  # most popular first
    total = pop.sum()
    if total <= 0:
        return np.full(pop.size, 2, dtype=np.int64)
    before = (np.cumsum(pop[order]) - pop[order]) / total  # share held by more popular items
    bucket_sorted = np.minimum((before * 3).astype(np.int64), 2)
    buckets = np.empty(pop.size, dtype=np.int64)
    buckets[order] = bucket_sorted
    buckets[pop == 0] = 2
    return buckets


def popularity_segments(
    relevant: Sequence[np.ndarray], item_popularity: np.ndarray
) -> dict[str, np.ndarray]:
    """Users by the popularity bucket of their held-out item (several: the most popular one)."""
    buckets = popularity_buckets(item_popularity)  # (n_items,)
    items, starts, _ = _flatten(relevant)
    user_bucket = np.minimum.reduceat(buckets[items], starts)  # (n,) lowest bucket = most popular
    out = {}
    for i, name in enumerate(POPULARITY_BUCKETS):
        mask = user_bucket == i
        if mask.any():
            out[f"held-out popularity {name}"] = mask
    return out


def segment_families(
    history_lengths: np.ndarray,
    relevant: Sequence[np.ndarray],
    item_popularity: np.ndarray,
    bounds: Sequence[int],
) -> dict[str, dict[str, np.ndarray]]:
    """{family: {segment: bool mask (n_users,)}}; each family partitions the users."""
    if len(history_lengths) != len(relevant):
        raise ValueError(
            f"segments: history_lengths has {len(history_lengths)} users, "
            f"relevant has {len(relevant)}; expected one entry per evaluated user"
        )
    return {
        "history": history_segments(history_lengths, bounds),
        "heldout_item": heldout_item_segments(relevant, item_popularity),
        "heldout_popularity": popularity_segments(relevant, item_popularity),
    }


def build_segments(
    history_lengths: np.ndarray,
    relevant: Sequence[np.ndarray],
    item_popularity: np.ndarray,
    bounds: Sequence[int],
) -> dict[str, np.ndarray]:
    """All segments in report order: history, held-out item cold/warm, popularity."""
    families = segment_families(history_lengths, relevant, item_popularity, bounds)
    return {name: mask for family in families.values() for name, mask in family.items()}


def user_segments(families: dict[str, dict[str, np.ndarray]], n_users: int) -> dict[str, list]:
    """{family: the segment name of each user (n_users,)}, for the per-user export."""
    out = {}
    for family, masks in families.items():
        labels = np.full(n_users, None, dtype=object)
        for name, mask in masks.items():
            labels[mask] = name
        out[family] = labels.tolist()
    return out


def _flatten(relevant: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out items concatenated (m,), each user's start offset (n,) and count (n,)."""
    sizes = np.fromiter((np.size(r) for r in relevant), dtype=np.int64, count=len(relevant))
    if sizes.size and sizes.min() == 0:
        empty = np.flatnonzero(sizes == 0)[:5].tolist()
        raise ValueError(f"segments: every user needs >= 1 held-out item; empty for rows {empty}")
    items = np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in relevant])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return items, starts, sizes
