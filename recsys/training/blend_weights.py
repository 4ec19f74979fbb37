"""Training stage: learning the blend weights — grid search on the simplex, per user segment.

Reads the source recommenders, validation queries and their held-out items; writes SegmentWeights
(per segment the weights with the best validation NDCG@k — or, weight_choice "bagged", the mean of
the best of bootstrap resamples — or the global ones where a segment has too few users or no
clear gain). Deterministic: the grid is enumerated in a fixed order, the resamples seeded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.config import BlendConfig
from recsys.ranking.base import Query, Recommender
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.candidates import CandidateScores, blend_scores, rows_of_true
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
    queries = list(queries_valid)
    batches = _Batches(ranker, queries, relevant_valid, exclude, k)
    ndcg = _grid_ndcg(ranker, queries, relevant_valid, exclude, grid, k, batches)  # (G, n)
    segments = ranker.segments(queries_valid)  # (n,)
    bagged = config.weight_choice == "bagged"
    if bagged:  # the bagged weights, scored like grid points: (1 + segments, S), (.., n)
        grid = _bagged_weights(grid, ndcg, segments, config, min_segment_users)
        ndcg = _grid_ndcg(ranker, queries, relevant_valid, exclude, grid, k, batches)
    return _pick(grid, ndcg, segments, names, config, min_segment_users, bagged)


def _bagged_weights(
    grid: np.ndarray, ndcg: np.ndarray, segments: np.ndarray, config: BlendConfig, min_users: int
) -> np.ndarray:
    """Row 0: the mean of the best grid points of config.weight_bags bootstrap resamples of all
    users; row 1 + s: the same over segment s's users (row 0 where it has too few). Each bag
    draws from the same seed, so a segment holding every user gets row 0's weights. (1 + S, n_w)"""

    def bag(members: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        draws = rng.integers(0, members.size, size=(config.weight_bags, members.size))
        counts = np.zeros((config.weight_bags, members.size))  # (B, m) times each user drawn
        np.add.at(counts, (np.arange(config.weight_bags)[:, None], draws), 1.0)
        best = np.argmax(ndcg[:, members] @ counts.T, axis=0)  # (B,) first max per resample
        return np.round(grid[best].mean(axis=0), 6)

    rows = [bag(np.arange(segments.size))]
    for number in range(len(config.segment_bounds) + 1):
        members = np.flatnonzero(segments == number)
        rows.append(bag(members) if members.size >= max(min_users, 2) else rows[0])
    return np.vstack(rows)


@dataclass(frozen=True)
class _Contest:
    """Relevant candidates of a batch, each with the candidates of its row whose order against
    it depends on the weights (grouped by how many there are, so that little is padding)."""

    cands: CandidateScores  # (m rows, C') each relevant candidate's contested candidates
    rows: np.ndarray  # (m,) each relevant candidate's query, within the batch
    own: np.ndarray  # (m,) its column among its contested candidates (it is one of them)
    earlier: np.ndarray  # (m, C') bool: the contested candidate sits before it in the row
    ahead: np.ndarray  # (m,) candidates that rank above it under any weights


@dataclass(frozen=True)
class _Batch:
    """One batch of the weight search: its relevant candidates that can still reach the top k."""

    part: slice  # the batch's queries
    contests: list[_Contest]
    denom: np.ndarray  # (b,) min(relevant count, k) per query: per_user_metrics' ideal
    size: int  # b, queries in the batch

    @property
    def nbytes(self) -> int:
        """What holding it costs (its scores counted as float64 too: normalized64)."""
        return sum(c.cands.normalized.nbytes * 4 + c.cands.items.nbytes for c in self.contests)


class _Batches:
    """The weight search's batches, built once per pass of the sources; a second pass (the
    bagged weights' scores) reuses them while they hold at most CACHE_BYTES."""

    CACHE_BYTES = 512 * 2**20
    GROUP = 64  # relevant candidates blended together (with as many contested columns)

    def __init__(self, ranker: BlendedRanker, queries: list[Query], relevant, exclude, k: int):
        self.ranker, self.queries, self.relevant, self.exclude, self.k = (
            ranker, queries, relevant, exclude, k,
        )  # fmt: skip
        self.cache: list[_Batch] | None = None

    def __iter__(self) -> Iterator[_Batch]:
        if self.cache is not None:
            yield from self.cache
            return
        kept: list[_Batch] | None = []
        held_bytes = 0
        for part in self.ranker.batches(len(self.queries)):
            batch = self._build(part)
            held_bytes += batch.nbytes
            kept = kept if kept is not None and held_bytes <= self.CACHE_BYTES else None
            if kept is not None:
                kept.append(batch)
            yield batch
        self.cache = kept

    def _build(self, part: slice) -> _Batch:
        exclude = None if self.exclude is None else list(self.exclude)[part]
        cands = self.ranker.candidates(self.queries[part], exclude)
        rel = [np.unique(np.asarray(r, dtype=np.int64)) for r in self.relevant[part]]
        rows, cols = _relevant_columns(cands.items, rel)  # (m,) each relevant candidate
        ahead, contested = _standing(cands, rows, cols)  # (m,), (m, C)
        keep = (ahead < self.k) & cands.available[rows].any(axis=1)  # the rest gain 0 anywhere
        rows, cols, ahead, contested = rows[keep], cols[keep], ahead[keep], contested[keep]
        order = np.argsort(contested.sum(axis=1), kind="stable")  # fewest contested first
        contests = [
            _contest(cands, rows[g], cols[g], ahead[g], contested[g])
            for g in np.array_split(order, max(1, -(-order.size // self.GROUP)))
            if g.size
        ]
        denom = np.minimum([r.size for r in rel], self.k)  # (b,) as per_user_metrics
        return _Batch(part, contests, denom, len(rel))


def _contest(
    cands: CandidateScores,
    rows: np.ndarray,
    cols: np.ndarray,
    ahead: np.ndarray,
    contested: np.ndarray,
) -> _Contest:
    """The relevant candidates (rows, cols) of `cands` with only their contested candidates
    (contested: (m, C) bool, _standing's), as a batch of their own."""
    picked = rows_of_true(contested)  # (m, C') columns of the contested, -1 padded
    safe = np.maximum(picked, 0)
    mine = cands.rows(rows)
    items = np.where(picked >= 0, np.take_along_axis(mine.items, safe, axis=1), -1)
    normalized = np.take_along_axis(mine.normalized, safe[None], axis=2)  # (S, m, C')
    raw = np.take_along_axis(mine.raw, safe[None], axis=2)
    raw[:, picked < 0] = -np.inf
    own = np.argmax(picked == cols[:, None], axis=1)  # (m,) the relevant one's new column
    earlier = (picked >= 0) & (picked < cols[:, None])  # (m, C')
    compact = CandidateScores(items, raw, normalized, mine.available)
    return _Contest(compact, rows, own, earlier, ahead)


def _grid_ndcg(
    ranker: BlendedRanker,
    queries: list[Query],
    relevant: Sequence[np.ndarray],
    exclude: Sequence[np.ndarray] | None,
    grid: np.ndarray,
    k: int,
    batches: _Batches | None = None,
) -> np.ndarray:
    """NDCG@k of every grid point for every query. (G, n) float64.

    The value per_user_metrics gives on each grid point's top-k list (top_k's order: score
    descending, ties to the lower column, i.e. the lower item_idx), computed from each relevant
    candidate's rank instead of sorting: its rank is the number of candidates scoring above it,
    plus those tied with it in an earlier column. Only the rows holding a relevant candidate
    are blended (the others score 0 at every grid point), each only over the candidates whose
    order against it the weights can change (_standing). `batches`: those of an earlier pass
    over the same queries (their candidates, reused where cached)."""
    out = np.zeros((grid.shape[0], len(queries)), dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # (k,)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[j]: best DCG of j hits
    for batch in batches or _Batches(ranker, queries, relevant, exclude, k):
        dcg = np.zeros((grid.shape[0], batch.size))  # (G, b)
        for contest in batch.contests:
            cands, rows, own = contest.cands, contest.rows, contest.own
            for g, weights in enumerate(grid):
                rows_w = np.broadcast_to(weights, (rows.size, weights.size))  # (m, S)
                mine, _ = blend_scores(cands, rows_w)  # (m, C'), -inf: not rankable
                score = mine[np.arange(rows.size), own][:, None]  # (m, 1)
                rank = contest.ahead + (mine > score).sum(axis=1)
                rank += ((mine == score) & contest.earlier).sum(axis=1)
                ranked = np.isfinite(score[:, 0]) & (rank < k)
                gain = np.where(ranked, discounts[np.minimum(rank, k - 1)], 0.0)  # (m,)
                dcg[g] += np.bincount(rows, weights=gain, minlength=batch.size)  # (b,)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, batch.part] = dcg / ideal[batch.denom]
    return out


def _standing(
    cands: CandidateScores, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each relevant candidate (row, col) stands against the others of its row under any
    weights: (m,) how many beat it on every source the row has, and (m, C) bool which are
    contested — neither beating it on every source nor beaten by it on every source, or itself.
    A margin is one by more than float32 can tie: a blend is a convex combination of the
    available sources' normalised scores, so a margin on every source is a margin on the blend,
    and once cast the order holds. The uncontested ones can be left out of the search's blends:
    those ahead count the same at every grid point, those behind never."""
    ahead = np.zeros(rows.size, dtype=np.int64)
    contested = np.zeros((rows.size, cands.items.shape[1]), dtype=bool)
    for start in range(0, rows.size, 256):  # (b, S, C) at a time
        r, c = rows[start : start + 256], cols[start : start + 256]
        scores = cands.normalized[:, r, :].transpose(1, 0, 2).astype(np.float64)  # (b, S, C)
        gap = scores - scores[np.arange(r.size), :, c][:, :, None]  # (b, S, C)
        available = cands.available[r][:, :, None]  # (b, S, 1)
        margin = 1e-6 * (1.0 + np.abs(scores).max(axis=(1, 2)))[:, None, None]  # (b, 1, 1)
        above = np.where(available, gap > margin, True).all(axis=1) & cands.valid[r]  # (b, C)
        below = np.where(available, gap < -margin, True).all(axis=1)
        ahead[start : start + 256] = above.sum(axis=1)
        contested[start : start + 256] = cands.valid[r] & ~above & ~below
    return ahead, contested


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
    bagged: bool = False,
) -> SegmentWeights:
    """Global argmax; a segment keeps its own argmax only when it has `min_users` users and
    beats the global weights on them by more than one standard error of the paired per-user
    difference (segment-level maxima over a grid are optimistic; this keeps noise out).
    bagged: `grid` holds _bagged_weights' rows (global, then each segment's) instead."""
    mean_all = ndcg.mean(axis=1)  # (G,)
    best_all = 0 if bagged else int(np.argmax(mean_all))  # first max: fixed grid order
    per_segment: dict[str, dict[str, float]] = {}
    stats: dict = {"users": {"all": int(segments.size)}, "ndcg": {"all": float(mean_all[best_all])}}
    points = math.comb(config.weight_grid - 1 + len(names) - 1, len(names) - 1)  # grid's size
    stats.update(grid_points=points, choice=config.weight_choice, chosen={})
    for number, label in enumerate(segment_labels(config.segment_bounds)):
        members = segments == number
        n = int(members.sum())
        stats["users"][label] = n
        stats["ndcg"][label] = float(ndcg[best_all, members].mean()) if n else None
        if n < max(min_users, 2):
            stats["chosen"][label] = "global (few users)"
            continue
        best = 1 + number if bagged else int(np.argmax(ndcg[:, members].mean(axis=1)))
        gain = ndcg[best, members] - ndcg[best_all, members]  # (n,) paired per user
        if gain.mean() <= gain.std(ddof=1) / np.sqrt(n):
            stats["chosen"][label] = "global (no clear gain)"
            continue
        per_segment[label] = dict(zip(names, map(float, grid[best]), strict=True))
        stats["ndcg"][label] = float(ndcg[best, members].mean())
        stats["chosen"][label] = "own"
    default = dict(zip(names, map(float, grid[best_all]), strict=True))
    return SegmentWeights(list(config.segment_bounds), default, per_segment, stats)
