"""Data stage: a seeded synthetic catalog; writes items.csv, users.csv, interactions.csv.

Items are written from topic vocabularies: each has a subtopic ("Cooking|Baking"), a quarter also a
second topic, and a style ("for beginners", "illustrated", ...) that most descriptions state. Users
have a sparse taste over the 48 subtopics that drifts over the year, a preferred style, and a
hidden taste over item clusters that no text reveals, so the text model and the collaborative
model both have something to learn. About 10% of the items are cold (text, no interactions) and
about 10% are released during the year (no interactions before their release).
The files follow the input contract (docs/internals.md). Same seed -> byte-identical files, whatever
SIMD kernels numpy picks on the CPU (tests/data/test_sample.py checks both).
This module draws the latent world and the interactions; sample_text.py writes the text.

    python -m recsys.data.sample --out data/sample --seed 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data import sample_vocabulary as vocab
from recsys.data.sample_text import item_table, user_table
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID, WEIGHT

START = 1_704_067_200  # 2024-01-01T00:00:00Z: interactions span one year from here
YEAR = 365 * 86_400
N_SEGMENTS = 4  # a history is drawn in 4 time slices; tastes drift from the first to the last
N_CLUSTERS = 20  # hidden item clusters: the signal only collaborative filtering can see
MIX_FRACTION = 0.25  # items that mix two topics
DRIFT_FRACTION = 0.4  # users who take up a new subtopic during the year
NEW_FRACTION = 0.1  # items released during the year rather than before it
REPEAT_RATE = 0.02  # interactions repeated later (re-reads, re-listens)
OFF_TOPIC = 0.002  # affinity floor: about 1 pick in 6 falls outside the user's tastes
MAX_PER_USER = 400
HIDDEN_STRENGTH = 1.0  # weight of the hidden clusters in the choice logit (topic weight: 1)
STYLE_STRENGTH = 1.0  # weight of the style preference in the choice logit
POP_SD = 1.2  # spread of log-popularity: the top 10% of items get about a third of interactions


@dataclass(frozen=True)
class _Items:
    tastes: np.ndarray  # (n_items, 2) subtopic index (topic * 3 + sub); column 1 -1 if unmixed
    taste_weights: np.ndarray  # (n_items, 2) weights of those two; rows sum to 1
    cluster: np.ndarray  # (n_items,) hidden cluster, independent of the topics
    style: np.ndarray  # (n_items,) index into vocab.STYLES
    log_pop: np.ndarray  # (n_items,) popularity skew
    cold: np.ndarray  # (n_items,) bool: never interacted with
    release: np.ndarray  # (n_items,) epoch s from which the item can be picked


@dataclass(frozen=True)
class _Users:
    taste_start: np.ndarray  # (n_users, n_tastes) sparse mixture over subtopics at the start
    taste_end: np.ndarray  # (n_users, n_tastes) ... and at the end of the year (drift)
    hidden: np.ndarray  # (n_users, N_CLUSTERS) taste over hidden clusters
    style: np.ndarray  # (n_users, n_styles) taste over item styles


def generate_sample(
    out_dir: Path,
    seed: int = 0,
    n_users: int = 2000,
    n_items: int = 3000,
    mean_interactions: float = 40.0,
    cold_fraction: float = 0.1,
) -> dict[str, Path]:
    """Write items.csv, users.csv and interactions.csv under out_dir; returns {table: path}."""
    _check_sizes(n_users, n_items, mean_interactions, cold_fraction)
    rng = np.random.default_rng(seed)
    n_topics = len(vocab.TOPICS)
    items = _draw_items(rng, n_items, n_topics, cold_fraction)
    users = _draw_users(rng, n_users, n_topics)
    item_ids = _ids("i", n_items, 5)
    user_ids = _ids("u", n_users, 4)
    items_frame = item_table(rng, items.tastes, items.style, item_ids)
    users_frame = user_table(rng, users.taste_start, user_ids)
    interactions = _draw_interactions(rng, items, users, mean_interactions)
    interactions_frame = (
        pl.DataFrame(
            {
                USER_ID: pl.Series(user_ids).gather(interactions["user"]),
                ITEM_ID: pl.Series(item_ids).gather(interactions["item"]),
                TIMESTAMP: interactions["time"],
                WEIGHT: interactions["weight"],
            }
        )
        .sort([TIMESTAMP, USER_ID, ITEM_ID])  # a log, in time order
    )  # fmt: skip
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in ("items", "users", "interactions")}
    items_frame.write_csv(paths["items"])
    users_frame.write_csv(paths["users"])
    interactions_frame.write_csv(paths["interactions"])
    return paths


def _check_sizes(n_users: int, n_items: int, mean_interactions: float, cold: float) -> None:
    problems = []
    if n_users < 1:
        problems.append(f"n_users must be >= 1, found {n_users}")
    if n_items < 2 * len(vocab.TOPICS):
        problems.append(
            f"n_items must be >= {2 * len(vocab.TOPICS)} (two per topic), found {n_items}"
        )
    if not 1.0 <= mean_interactions <= MAX_PER_USER:
        problems.append(
            f"mean_interactions must be in [1, {MAX_PER_USER}], found {mean_interactions}"
        )
    if not 0.0 <= cold <= 0.5:
        problems.append(f"cold_fraction must be in [0, 0.5], found {cold}")
    if problems:
        raise ValueError("generate_sample: " + "; ".join(problems))


def _ids(prefix: str, n: int, min_width: int) -> list[str]:
    width = max(min_width, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _draw_items(rng: np.random.Generator, n_items: int, n_topics: int, cold: float) -> _Items:
    per = vocab.SUBTOPICS_PER_TOPIC
    tastes = np.full((n_items, 2), -1, dtype=np.int64)
    tastes[:, 0] = rng.integers(n_topics * per, size=n_items)
    mixed = np.flatnonzero(rng.random(n_items) < MIX_FRACTION)
    # a second topic different from the first (shift by 1..n_topics-1), any of its subtopics
    other = (tastes[mixed, 0] // per + rng.integers(1, n_topics, len(mixed))) % n_topics
    tastes[mixed, 1] = other * per + rng.integers(per, size=len(mixed))
    weights = np.zeros((n_items, 2))
    weights[:, 0] = 1.0
    weights[mixed] = (0.6, 0.4)
    order = rng.permutation(n_items)  # disjoint random sets of cold and of new items
    n_cold, n_new = int(round(cold * n_items)), int(round(NEW_FRACTION * n_items))
    cold_mask = np.zeros(n_items, dtype=bool)
    cold_mask[order[:n_cold]] = True
    release = np.full(n_items, START, dtype=np.int64)
    new = order[n_cold : n_cold + n_new]
    release[new] = START + (rng.uniform(0.3, 0.9, n_new) * YEAR).astype(np.int64)
    return _Items(
        tastes=tastes,
        taste_weights=weights,
        cluster=rng.integers(N_CLUSTERS, size=n_items),
        style=rng.integers(len(vocab.STYLES), size=n_items),
        log_pop=rng.normal(0.0, POP_SD, n_items),
        cold=cold_mask,
        release=release,
    )


def _draw_users(rng: np.random.Generator, n_users: int, n_topics: int) -> _Users:
    per = vocab.SUBTOPICS_PER_TOPIC
    topic_prior = rng.dirichlet(np.full(n_topics, 8.0))  # some topics are more popular
    start = np.zeros((n_users, n_topics, per))
    for u in range(n_users):
        k = rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2])
        chosen = rng.choice(n_topics, k, replace=False, p=topic_prior)
        topic_share = rng.dirichlet(np.full(k, 2.0))  # (k,)
        start[u, chosen] = topic_share[:, None] * rng.dirichlet(np.full(per, 0.5), size=k)
    start = start.reshape(n_users, n_topics * per)
    end = start.copy()
    drifting = np.flatnonzero(rng.random(n_users) < DRIFT_FRACTION)
    new = rng.integers(n_topics * per, size=len(drifting))  # a new subtopic, or more of an old one
    end[drifting] *= 0.7
    end[drifting, new] += 0.3
    hidden = rng.dirichlet(np.full(N_CLUSTERS, 0.3), size=n_users)  # sparse-ish
    style = rng.dirichlet(np.ones(len(vocab.STYLES)), size=n_users)
    return _Users(taste_start=start, taste_end=end, hidden=hidden, style=style)


def _draw_interactions(
    rng: np.random.Generator, items: _Items, users: _Users, mean: float
) -> dict[str, np.ndarray]:
    """Per user: Gumbel top-k draws (without replacement) in time slices, then a few repeats."""
    n_users = users.hidden.shape[0]
    n_always = int((~items.cold & (items.release == START)).sum())  # can be picked at any time
    sigma = 0.8
    counts = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n_users)
    # at most half of n_always: every slice always has enough items left to pick from
    counts = np.clip(np.round(counts), 3, min(MAX_PER_USER, max(3, n_always // 2))).astype(int)
    base = items.log_pop.copy()  # (n_items,)
    base[items.cold] = -np.inf
    n_styles = len(vocab.STYLES)
    parts: dict[str, list[np.ndarray]] = {"user": [], "item": [], "time": [], "weight": []}
    for u in range(n_users):
        hidden = HIDDEN_STRENGTH * np.log(users.hidden[u, items.cluster] * N_CLUSTERS + 0.1)
        style = STYLE_STRENGTH * np.log(users.style[u, items.style] * n_styles + 0.2)
        times = _draw_times(rng, counts[u])
        chosen, affinity = _draw_history(rng, items, users, u, base + hidden + style, times)
        strong = rng.random(len(chosen)) < 0.15 + 0.5 * affinity  # e.g. a purchase, not a view
        weight = np.where(strong, 2.0, 1.0)
        n_rep = rng.binomial(len(chosen), REPEAT_RATE)
        rep = rng.choice(len(chosen), n_rep, replace=False)
        later = np.minimum(times[rep] + rng.integers(3600, 30 * 86_400, n_rep), START + YEAR - 1)
        parts["user"].append(np.full(len(chosen) + n_rep, u, dtype=np.int64))
        parts["item"].append(np.concatenate([chosen, chosen[rep]]))
        parts["time"].append(np.concatenate([times, later]))
        parts["weight"].append(np.concatenate([weight, np.ones(n_rep)]))
    return {key: np.concatenate(values) for key, values in parts.items()}


def _draw_history(
    rng: np.random.Generator, items: _Items, users: _Users, u: int, base: np.ndarray, times
) -> tuple[np.ndarray, np.ndarray]:
    """One distinct item per time (sorted), slice by slice, each released before its slice
    starts; returns the items and their topic affinity to the user at that time."""
    drift = np.linspace(0.0, 1.0, N_SEGMENTS)[:, None]  # (slices, 1)
    tastes = (1 - drift) * users.taste_start[u] + drift * users.taste_end[u]  # (slices, n_tastes)
    gathered = tastes[:, np.maximum(items.tastes, 0)]  # (slices, n_items, 2); -1 has weight 0
    affinity = (gathered * items.taste_weights).sum(axis=2)  # (slices, n_items) in [0, 1]
    logits = base + np.log(affinity + OFF_TOPIC) + rng.gumbel(size=affinity.shape)
    bounds = np.linspace(0, len(times), N_SEGMENTS + 1).round().astype(int)
    taken = np.zeros(len(base), dtype=bool)
    chosen, affinities = [], []
    for s in range(N_SEGMENTS):
        size = bounds[s + 1] - bounds[s]
        if size == 0:
            continue
        logits[s, taken | (items.release > times[bounds[s]])] = -np.inf
        # argpartition's output order depends on the CPU's SIMD (AVX-512 vs AVX2 sort kernels):
        # sorting the chosen indices first makes the same seed give the same files everywhere
        top = rng.permutation(np.sort(np.argpartition(-logits[s], size)[:size]))
        taken[top] = True
        chosen.append(top)
        affinities.append(affinity[s, top])
    return np.concatenate(chosen), np.concatenate(affinities)


def _draw_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """n sorted epoch seconds in the user's active window within the year."""
    first = START + rng.uniform(0.0, 0.6) * YEAR
    last = first + rng.uniform(0.2, 1.0) * (START + YEAR - first)
    return np.sort(rng.integers(int(first), int(last), n))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys.data.sample", description="Write the synthetic sample catalog."
    )
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--mean-interactions", type=float, default=40.0)
    args = parser.parse_args(argv)
    paths = generate_sample(args.out, args.seed, args.users, args.items, args.mean_interactions)
    for path in paths.values():
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
