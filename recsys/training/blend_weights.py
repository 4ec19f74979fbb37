"""Training stage: learning the blend weights — grid search on the simplex, per user segment.

Reads the source recommenders, validation queries and their held-out items; writes SegmentWeights
(per segment the weights with the best validation NDCG@k, or the global best where a segment has
too few users or no clear gain). Deterministic: the grid is enumerated in a fixed order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from recsys.config import BlendConfig
from recsys.ranking.base import Query, Recommender
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import blend_scores
from recsys.ranking.segments import SegmentWeights, segment_labels


def simplex_grid(n_sources: int, points: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/(points-1), ..., 1} summing to 1. (G, n_sources)."""
    steps = points - 1
    rows = [c for c in itertools.product(range(points), repeat=n_sources) if sum(c) == steps]
    return np.array(rows, dtype=np.float64) / steps


def learn_weights(
    sources: dict[str, Recommender],
    queries_valid: Sequence[Query],
    relevant_valid: Sequence[np.ndarray],
    exclude: Sequence[np.ndarray] | None,
    config: BlendConfig,
    k: int = 10,
    min_segment_users: int = 50,
    user_history_len: np.ndarray | None = None,
) -> SegmentWeights:
    """Per segment, the grid weights that maximise mean NDCG@k on the validation queries.

    `config.fixed_weights` bypasses learning. Candidates and normalised scores are computed once;
    only the weighted sum is redone per grid point, so the cost is one pass of every source.
    """
    if config.fixed_weights is not None:
        unknown = set(config.fixed_weights) - set(config.sources)
        if unknown:
            raise ValueError(
                f"blend.fixed_weights names {sorted(unknown)}, not in blend.sources "
                f"{config.sources}"
            )
        return SegmentWeights.fixed(config.fixed_weights, config.segment_bounds)
    if len(queries_valid) != len(relevant_valid) or not queries_valid:
        raise ValueError(
            f"learn_weights: expected one relevant array per validation query (and at least "
            f"one query), found {len(queries_valid)} queries, {len(relevant_valid)} relevant"
        )
    names = list(config.sources)
    uniform = SegmentWeights.uniform(names, config.segment_bounds)
    ranker = BlendedRanker(sources, uniform, config, user_history_len)
    grid = simplex_grid(len(names), config.weight_grid)  # (G, S)
    ndcg = _grid_ndcg(ranker, list(queries_valid), relevant_valid, exclude, grid, k)  # (G, n)
    segments = ranker.segments(queries_valid)  # (n,)
    return _pick(grid, ndcg, segments, names, config, min_segment_users)


def _grid_ndcg(
    ranker: BlendedRanker,
    queries: list[Query],
    relevant: Sequence[np.ndarray],
    exclude: Sequence[np.ndarray] | None,
    grid: np.ndarray,
    k: int,
) -> np.ndarray:
    """NDCG@k of every grid point for every query. (G, n) float64.

    The value per_user_metrics gives on each grid point's top-k list (top_k's order: score
    descending, ties to the lower column, i.e. the lower item_idx), computed from each relevant
    candidate's rank instead of sorting: its rank is the number of candidates scoring above it,
    plus those tied with it in an earlier column. Only the rows holding a relevant candidate
    are blended (the others score 0 at every grid point)."""
    out = np.zeros((grid.shape[0], len(queries)), dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # (k,)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[j]: best DCG of j hits
    for part in ranker.batches(len(queries)):
        batch_exclude = None if exclude is None else list(exclude)[part]
        cands = ranker.candidates(queries[part], batch_exclude)
        rel = [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant[part]]
        rows, cols = _relevant_columns(cands.items, rel)  # (m,) each relevant candidate
        denom = np.minimum([r.size for r in rel], k)  # (b,) as per_user_metrics
        earlier = np.arange(cands.items.shape[1])[None, :] < cols[:, None]  # (m, C)
        held = np.unique(rows)  # (h,) the rows with a relevant candidate
        cands = cands.rows(held)
        local = np.searchsorted(held, rows)  # (m,) each relevant candidate's row in `held`
        for g, weights in enumerate(grid):
            rows_w = np.broadcast_to(weights, (held.size, weights.size))  # (h, S)
            blended, _ = blend_scores(cands, rows_w)  # (h, C), -inf: not rankable
            mine = blended[local]  # (m, C): each relevant candidate's row
            score = mine[np.arange(rows.size), cols][:, None]  # (m, 1)
            rank = (mine > score).sum(axis=1) + ((mine == score) & earlier).sum(axis=1)
            ranked = np.isfinite(score[:, 0]) & (rank < k)
            gain = np.where(ranked, discounts[np.minimum(rank, k - 1)], 0.0)  # (m,)
            dcg = np.bincount(rows, weights=gain, minlength=len(rel))  # (b,)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[g, part] = dcg / ideal[denom]
    return out


def _relevant_columns(
    items: np.ndarray, relevant: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every relevant item among each row's candidates (items: (b, C), item_idx
    ascending per row, -1 padding); relevant items that are not candidates are left out."""
    rows, cols = [], []
    for row, wanted in enumerate(relevant):
        found = np.flatnonzero(np.isin(items[row], wanted) & (items[row] >= 0))
        rows.append(np.full(found.size, row, dtype=np.int64))
        cols.append(found)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols).astype(np.int64)


def _pick(
    grid: np.ndarray,
    ndcg: np.ndarray,
    segments: np.ndarray,
    names: list[str],
    config: BlendConfig,
    min_users: int,
) -> SegmentWeights:
    """Global argmax; a segment keeps its own argmax only when it has `min_users` users and
    beats the global weights on them by more than one standard error of the paired per-user
    difference (segment-level maxima over a grid are optimistic; this keeps noise out)."""
    mean_all = ndcg.mean(axis=1)  # (G,)
    best_all = int(np.argmax(mean_all))  # first max: fixed grid order
    per_segment: dict[str, dict[str, float]] = {}
    stats: dict = {"users": {"all": int(segments.size)}, "ndcg": {"all": float(mean_all[best_all])}}
    stats.update(grid_points=int(grid.shape[0]), chosen={})
    for number, label in enumerate(segment_labels(config.segment_bounds)):
        members = segments == number
        n = int(members.sum())
        stats["users"][label] = n
        stats["ndcg"][label] = float(ndcg[best_all, members].mean()) if n else None
        if n < max(min_users, 2):
            stats["chosen"][label] = "global (few users)"
            continue
        best = int(np.argmax(ndcg[:, members].mean(axis=1)))
        gain = ndcg[best, members] - ndcg[best_all, members]  # (n,) paired per user
        if gain.mean() <= gain.std(ddof=1) / np.sqrt(n):
            stats["chosen"][label] = "global (no clear gain)"
            continue
        per_segment[label] = dict(zip(names, map(float, grid[best]), strict=True))
        stats["ndcg"][label] = float(ndcg[best, members].mean())
        stats["chosen"][label] = "own"
    default = dict(zip(names, map(float, grid[best_all]), strict=True))
    return SegmentWeights(list(config.segment_bounds), default, per_segment, stats)
