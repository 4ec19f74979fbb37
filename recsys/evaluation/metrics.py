"""Evaluation stage: the one metrics kernel. Reads ranked item_idx lists + held-out items, writes
per-user metric arrays (accuracy) and beyond-accuracy figures (coverage, popularity, diversity).

Conventions (binary relevance, cut-off k, `denom = min(|relevant|, k)`):
  recall@k   = hits / denom
  ndcg@k     = sum_{hit at rank r} 1/log2(r+1) / sum_{r <= denom} 1/log2(r+1)
  mrr@k      = 1 / rank of the first hit, 0 without a hit
  map@k      = sum_{hit at rank r} precision@r / denom
  hit_rate@k = 1 if any hit else 0;  precision@k = hits / k
Padding (-1) never counts as a hit; an item repeated in a list counts once, at its first position;
repeated held-out items count once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.vectors import normalize_rows

ACCURACY_METRICS = ("ndcg", "recall", "mrr", "map", "hit_rate", "precision")
_CHUNK_ROWS = 4096  # rows per block in the (rows, k, dim) diversity computation


def per_user_metrics(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray],
    k: int,
    metrics: Sequence[str] = ("ndcg", "recall", "mrr", "map", "hit_rate"),
) -> dict[str, np.ndarray]:
    """Accuracy metrics @k for every user: {name: (n_users,) float64}.

    ranked: (n_users, >=k) item_idx, best first, padded with -1.
    relevant[u]: held-out item_idx of user u (at least one per user).
    """
    unknown = [m for m in metrics if m not in ACCURACY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(ACCURACY_METRICS)}")
    top = _check_ranked(ranked, k)  # (n, k)
    rel_items, rel_users = _flatten_relevant(relevant, top.shape[0])
    n_rel = np.bincount(rel_users, minlength=top.shape[0])  # (n,) distinct relevant items
    hits = _row_membership(top, rel_items, rel_users) & _first_occurrence(top)  # (n, k) bool
    denom = np.minimum(n_rel, k).astype(np.float64)  # (n,)
    n_hits = hits.sum(axis=1).astype(np.float64)  # (n,)
    ranks = np.arange(1, k + 1, dtype=np.float64)  # (k,)
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        if name == "recall":
            out[name] = n_hits / denom
        elif name == "precision":
            out[name] = n_hits / k
        elif name == "hit_rate":
            out[name] = (n_hits > 0).astype(np.float64)
        elif name == "ndcg":
            discounts = 1.0 / np.log2(ranks + 1.0)  # (k,)
            ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[j] = best DCG of j hits
            out[name] = (hits @ discounts) / ideal[denom.astype(np.int64)]
        elif name == "mrr":
            first = np.argmax(hits, axis=1)  # (n,) index of the first hit (0 when none)
            out[name] = np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0)
        elif name == "map":
            precision_at = np.cumsum(hits, axis=1) / ranks  # (n, k) precision@r
            out[name] = (precision_at * hits).sum(axis=1) / denom
    return out


def catalog_coverage(ranked: np.ndarray, n_items: int) -> float:
    """Share of the catalog (n_items) that appears in at least one list."""
    items = np.asarray(ranked).ravel()
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError(f"ranked holds item_idx {items.max()} but the catalog has {n_items} items")
    return float(np.unique(items).size / n_items) if n_items > 0 else float("nan")


def popularity_bias(ranked: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """(n_users,) mean training popularity of each user's recommended items (nan: empty list)."""
    return _mean_over_valid(ranked, np.asarray(item_popularity, dtype=np.float64))


def novelty(ranked: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """(n_users,) mean self-information -log2 p(item) of each list (nan: empty list).

    p(item) is the item's share of training interactions with add-one smoothing,
    (pop + 1) / (sum(pop) + n_items), so never-seen items stay finite (and score highest).
    """
    pop = np.asarray(item_popularity, dtype=np.float64)  # (n_items,)
    info = -np.log2((pop + 1.0) / (pop.sum() + pop.size))  # (n_items,)
    return _mean_over_valid(ranked, info)


def intra_list_diversity(ranked: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """(n_users,) mean pairwise cosine distance 1 - cos(i, j) within each list (nan: < 2 items)."""
    ranked = np.asarray(ranked)
    vectors = np.asarray(item_vectors, dtype=np.float32)  # (n_items, dim)
    _check_items_in_range(ranked, vectors.shape[0], "item_vectors rows")
    unit = normalize_rows(vectors)  # zero vectors stay zero (distance 1)
    out = np.full(ranked.shape[0], np.nan)
    for start in range(0, ranked.shape[0], _CHUNK_ROWS):
        block = ranked[start : start + _CHUNK_ROWS]  # (b, k)
        valid = (block >= 0) & _first_occurrence(block)  # (b, k)
        vecs = unit[np.where(valid, block, 0)] * valid[..., None]  # (b, k, dim)
        cos = np.einsum("bid,bjd->bij", vecs, vecs, dtype=np.float64)  # (b, k, k)
        n = valid.sum(axis=1).astype(np.float64)  # (b,)
        pair_mask = valid[:, :, None] & valid[:, None, :]  # (b, k, k), diagonal included
        off_diag = (cos * pair_mask).sum(axis=(1, 2)) - np.einsum("bii->b", cos)
        n_pairs = n * (n - 1.0)  # ordered pairs
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + len(block)] = np.where(n >= 2, 1.0 - off_diag / n_pairs, np.nan)
    return out


def list_overlap(ranked_a: np.ndarray, ranked_b: np.ndarray) -> np.ndarray:
    """(n_users,) Jaccard overlap of the item sets of two lists per user (two empty lists: 1)."""
    a, b = np.asarray(ranked_a), np.asarray(ranked_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"list_overlap: expected two (n_users, k) arrays, found {a.shape}, {b.shape}"
        )
    a_valid = (a >= 0) & _first_occurrence(a)  # (n, ka)
    b_valid = (b >= 0) & _first_occurrence(b)  # (n, kb)
    b_users = np.broadcast_to(np.arange(b.shape[0])[:, None], b.shape)[b_valid]
    inter = (_row_membership(a, b[b_valid], b_users) & a_valid).sum(axis=1)  # (n,)
    union = a_valid.sum(axis=1) + b_valid.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _check_ranked(ranked: np.ndarray, k: int) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked: expected a 2-d (n_users, k) array, found shape {ranked.shape}")
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked: expected integer item_idx, found dtype {ranked.dtype}")
    if k < 1 or ranked.shape[1] < k:
        raise ValueError(
            f"ranked: expected k >= 1 and at least k={k} columns, found {ranked.shape}"
        )
    return ranked[:, :k].astype(np.int64)


def _flatten_relevant(
    relevant: Sequence[np.ndarray], n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct relevant items of all users concatenated, with their user row. Shapes (m,), (m,)."""
    if len(relevant) != n_users:
        raise ValueError(
            f"relevant: expected one array per ranked row ({n_users}), found {len(relevant)}"
        )
    lists = [np.asarray(r).ravel() for r in relevant]
    sizes = np.fromiter((x.size for x in lists), dtype=np.int64, count=n_users)
    if n_users and sizes.min() == 0:
        empty = np.flatnonzero(sizes == 0)[:5].tolist()
        raise ValueError(f"relevant: every user needs >= 1 held-out item; empty for rows {empty}")
    items = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, dtype=np.int64)
    if items.size and items.min() < 0:
        bad = int(np.repeat(np.arange(n_users), sizes)[np.argmin(items)])
        raise ValueError(f"relevant: item_idx must be >= 0, found {items.min()} for row {bad}")
    users = np.repeat(np.arange(n_users, dtype=np.int64), sizes)  # (m,)
    width = int(items.max(initial=0)) + 1
    pairs = np.unique(users * width + items)  # (m',) distinct (user, item), sorted by user
    return pairs % width, pairs // width


def _row_membership(ranked: np.ndarray, items: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(n, k) bool: ranked[u, j] is one of the items paired with user u; -1 never matches."""
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 2
    rows = np.arange(ranked.shape[0], dtype=np.int64)[:, None]  # (n, 1)
    keys = rows * width + (ranked.astype(np.int64) + 1)  # (n, k); +1 keeps -1 apart from item 0
    wanted = np.sort(users.astype(np.int64) * width + (items.astype(np.int64) + 1))  # (m,)
    pos = np.searchsorted(wanted, keys).clip(max=max(wanted.size - 1, 0))  # (n, k)
    found = wanted[pos] == keys if wanted.size else np.zeros(keys.shape, dtype=bool)
    return found & (ranked >= 0)


def _first_occurrence(ranked: np.ndarray) -> np.ndarray:
    """(n, k) bool: True where the entry is the first of its value in its row."""
    order = np.argsort(ranked, axis=1, kind="stable")  # equal values keep position order
    sorted_vals = np.take_along_axis(ranked, order, axis=1)
    repeat = np.zeros(ranked.shape, dtype=bool)
    repeat[:, 1:] = sorted_vals[:, 1:] == sorted_vals[:, :-1]
    first = np.empty(ranked.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    return first


def _mean_over_valid(ranked: np.ndarray, per_item: np.ndarray) -> np.ndarray:
    ranked = np.asarray(ranked)
    _check_items_in_range(ranked, per_item.size, "item_popularity")
    valid = (ranked >= 0) & _first_occurrence(ranked)  # (n, k); a repeat counts once
    values = per_item[np.where(valid, ranked, 0)] * valid  # (n, k)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, values.sum(axis=1) / n, np.nan)


def _check_items_in_range(ranked: np.ndarray, n_items: int, what: str) -> None:
    top = ranked.max(initial=-1)
    if top >= n_items:
        raise ValueError(f"ranked holds item_idx {top} but {what} covers only {n_items} items")
