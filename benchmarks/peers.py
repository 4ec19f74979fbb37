"""Benchmark peers for the outside-in protocol: popularity, tuned LightFM (WARP), tuned ALS and
SASRec-CE, every one fitted on a variant's REST; reads a Variant, returns per-user NDCG@10 and
Recall@10 on its test round, one dict per seed.

Tuning: a validation split carved from REST (each user's newest REST interaction) chooses the
LightFM / ALS grid point and stops SASRec; LightFM and ALS are then refitted on all of REST with
the chosen settings. SASRec keeps its early-stopped weights (trained without the validation
item) and ranks the test item from the full REST history, as the issue's reference figures were
made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import sasrec
from outside_in import Variant, hold_out_newest
from quality import ALS_GRID, LIGHTFM_GRID  # the same grids as the internal benchmark

from recsys.pipeline.fit import EvalSet, eval_set, histories, matrix

K = 10
Metrics = dict[str, np.ndarray]  # {"ndcg": (n_users,), "recall": (n_users,)}
Say = Callable[[str], None]


@dataclass
class Rounds:
    """REST split for tuning (train -> valid) and the outside test round (REST -> test)."""

    train: pl.DataFrame  # REST without each user's newest REST interaction
    valid: EvalSet
    test: EvalSet
    n_users: int
    n_items: int

    @classmethod
    def of(cls, variant: Variant) -> Rounds:
        ds = variant.dataset
        train, valid = hold_out_newest(variant.rest)
        return cls(
            train, eval_set([train], valid, ds.n_users), variant.test_round(),
            ds.n_users, ds.n_items,
        )  # fmt: skip


def metrics(ranked: np.ndarray, held: EvalSet) -> Metrics:
    """The shared kernel (cross-checked with ranx): per-user NDCG@10 and Recall@10."""
    from recsys.evaluation.metrics import per_user_metrics

    return per_user_metrics(ranked, held.relevant, K, ("ndcg", "recall"))


def score(rec, held: EvalSet) -> Metrics:
    """A recsys Recommender on a round: every item ranked, the user's history excluded."""
    ranked, _ = rec.recommend(held.queries, K, held.exclude)
    return metrics(ranked, held)


def popularity(variant: Variant, rounds: Rounds) -> Metrics:
    from recsys.ranking.popularity import PopularityRecommender

    rest = matrix(variant.rest, rounds.n_users, rounds.n_items)
    return score(PopularityRecommender.fit(rest), rounds.test)


def tune_collab(rounds: Rounds, model: str, grid: list[dict], threads: int, say: Say):
    """The CollabConfig of the grid point with the best validation NDCG@10."""
    from recsys.config import CollabConfig
    from recsys.ranking.collab import CollabRecommender

    train = matrix(rounds.train, rounds.n_users, rounds.n_items)
    best, best_ndcg = None, -1.0
    for point in grid:
        config = CollabConfig(model=model, threads=threads, fits=1, **point)
        ndcg = score(CollabRecommender.fit(train, config), rounds.valid)["ndcg"].mean()
        say(f"    {model} {point}: valid NDCG@{K} {ndcg:.4f}")
        if ndcg > best_ndcg:
            best, best_ndcg = config, ndcg
    return best


def collab_seeds(variant: Variant, rounds: Rounds, config, seeds: Sequence[int]) -> list[Metrics]:
    """The chosen config refitted on all of REST once per seed, scored on the test round."""
    from recsys.ranking.collab import CollabRecommender

    rest = matrix(variant.rest, rounds.n_users, rounds.n_items)
    return [
        score(CollabRecommender.fit(rest, config.model_copy(update={"seed": seed})), rounds.test)
        for seed in seeds
    ]


def sasrec_config(variant: Variant, seed: int, quick: bool) -> sasrec.SASRecConfig:
    """The issue's recipe: max_len 200, 50 on the sparse variants; --quick: a few epochs."""
    config = sasrec.SASRecConfig(max_len=50 if variant.sparse else 200, seed=seed)
    return replace(config, max_epochs=3, patience=3) if quick else config


def sasrec_seeds(
    variant: Variant, rounds: Rounds, seeds: Sequence[int], quick: bool, say: Say
) -> tuple[list[Metrics], list[dict]]:
    """SASRec-CE per seed: trained on REST minus validation, early-stopped on validation
    NDCG@10, then the test item ranked from the full REST history. Returns metrics and fit info."""
    train = histories(rounds.train, rounds.n_users)  # per user_idx, oldest first
    valid, test = rounds.valid, rounds.test
    valid_history = [q.history for q in valid.queries]
    test_history = [q.history for q in test.queries]

    def validate(model: sasrec.SASRec) -> float:
        ranked = sasrec.recommend(model, valid_history, valid.exclude, K)
        return float(metrics(ranked, valid)["ndcg"].mean())

    results, info = [], []
    for seed in seeds:
        config = sasrec_config(variant, seed, quick)
        say(f"    SASRec-CE seed {seed} (max_len {config.max_len}):")
        fitted = sasrec.fit(train, rounds.n_items, config, validate, say)
        start = time.perf_counter()
        ranked = sasrec.recommend(fitted.model, test_history, test.exclude, K)
        results.append(metrics(ranked, test))
        info.append({
            "seed": seed, "best_epoch": fitted.best_epoch, "epochs": fitted.epochs,
            "valid_ndcg": fitted.best_valid, "train_seconds": round(fitted.seconds, 1),
            "test_seconds": round(time.perf_counter() - start, 1),
        })  # fmt: skip
        say(
            f"    SASRec-CE seed {seed}: best epoch {fitted.best_epoch} of {fitted.epochs}, "
            f"valid NDCG@{K} {fitted.best_valid:.4f}, test NDCG@{K} "
            f"{results[-1]['ndcg'].mean():.4f}, {fitted.seconds:.0f} s"
        )
    return results, info


def cached_sasrec_seeds(
    cache: Path, variant: Variant, rounds: Rounds, seeds: Sequence[int], say: Say
) -> tuple[list[Metrics], list[dict]] | None:
    """SASRec-CE's lists trained elsewhere (benchmarks/peer_cache.py) for exactly these rounds,
    scored here; None when the cache has no such file (then it is trained here)."""
    import peer_cache

    found, where = peer_cache.cached_sasrec(cache, variant.name, rounds, variant.sparse, seeds)
    if found is None:
        say(f"  SASRec-CE: not from the cache ({where}); trained here")
        return None
    ranked, info = found
    results = [metrics(ranked[seed], rounds.test) for seed in seeds]
    for seed, result, facts in zip(seeds, results, info, strict=True):
        say(
            f"    SASRec-CE seed {seed} (from {where}, trained on {facts['device']}): best epoch "
            f"{facts['best_epoch']} of {facts['epochs']}, valid NDCG@{K} "
            f"{facts['valid_ndcg']:.4f}, test NDCG@{K} {result['ndcg'].mean():.4f}, "
            f"{facts['train_seconds']:.0f} s"
        )
    return results, [{**facts, "from": where} for facts in info]


def run_peers(
    variant: Variant,
    seeds: Sequence[int],
    threads: int,
    quick: bool,
    say: Say,
    sasrec: bool = True,
    cache: Path | None = None,
) -> tuple[dict[str, list[Metrics]], dict]:
    """Every peer on the variant (SASRec-CE unless `sasrec` is False; its lists from `cache`
    when that holds them for these rounds): {method: [metrics per seed]} and what tuning chose."""
    rounds = Rounds.of(variant)
    start = time.perf_counter()
    results: dict[str, list[Metrics]] = {"popularity": [popularity(variant, rounds)]}
    chosen: dict = {}
    for label, model, grid in (
        ("LightFM (WARP)", "lightfm", LIGHTFM_GRID),
        ("ALS", "als", ALS_GRID),
    ):
        config = tune_collab(rounds, model, grid[-1:] if quick else grid, threads, say)
        chosen[model] = config.model_dump(include=set(grid[0]))
        results[label] = collab_seeds(variant, rounds, config, seeds)
        say(f"  {label}: chosen {chosen[model]}, {time.perf_counter() - start:.0f} s so far")
    cached = None
    if sasrec and cache is not None and not quick:
        cached = cached_sasrec_seeds(cache, variant, rounds, seeds, say)
    if cached is not None:
        results["SASRec-CE"], chosen["sasrec"] = cached
    elif sasrec:
        results["SASRec-CE"], chosen["sasrec"] = sasrec_seeds(variant, rounds, seeds, quick, say)
    else:
        say("  SASRec-CE: left out (--no-sasrec)")
    chosen["peer_seconds"] = round(time.perf_counter() - start, 1)
    return results, chosen
