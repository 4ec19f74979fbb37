"""Training: the sequence source (recsys.ranking.sequence) fitted on an interaction frame.

Each user's interactions in time order become one sequence. A seeded sample of at most
[sequence] valid_users users with 3+ interactions has its newest interaction held out: SASRec is
trained on the rest (recsys.training.sasrec), early-stopped on those users' NDCG@10 (their other
items excluded), and the best epoch is kept — the recipe of the benchmarks' SASRec-CE peer. A
frame with no such user trains [sequence] max_epochs epochs (or until the time cap).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.config import SequenceConfig
from recsys.evaluation.metrics import per_user_metrics
from recsys.ranking import sasrec
from recsys.ranking.sequence import SequenceRecommender
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training import sasrec as sasrec_training

K = 10  # the validation cut-off (the nightly's eval.k is the blend's business)


def user_sequences(frame: pl.DataFrame, n_items: int) -> list[np.ndarray]:
    """Each user's item_idx in (timestamp, row) order, oldest first (users without rows left
    out: they teach the model nothing)."""
    items = frame[ITEM_IDX].to_numpy()
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(
            f"item_idx: expected values in [0, {n_items}), found {items.min()}..{items.max()}"
        )
    ordered = frame.sort([USER_IDX, TIMESTAMP, ROW])
    grouped = ordered.group_by(USER_IDX, maintain_order=True).agg(pl.col(ITEM_IDX))
    return [np.asarray(s, dtype=np.int64) for s in grouped[ITEM_IDX].to_list()]


def fit_sequence(
    frame: pl.DataFrame, n_items: int, config: SequenceConfig, say=lambda message: None
) -> SequenceRecommender:
    """SASRec fitted on `frame` (user_idx, item_idx, timestamp, row) as the module says."""
    sequences = user_sequences(frame, n_items)
    trained = np.zeros(n_items, dtype=bool)
    trained[frame[ITEM_IDX].to_numpy()] = True
    rng = np.random.default_rng(config.seed)
    eligible = np.array([i for i, s in enumerate(sequences) if s.size >= 3], dtype=np.int64)
    held = rng.permutation(eligible)[: config.valid_users]
    held_set = set(held.tolist())
    train = [s[:-1] if i in held_set else s for i, s in enumerate(sequences)]
    histories = [sequences[i][:-1] for i in held]
    relevant = [sequences[i][-1:] for i in held]

    def validate(model: sasrec.SASRec) -> float:
        ranked = sasrec.recommend(model, histories, histories, K)
        return float(per_user_metrics(ranked, relevant, K, ("ndcg",))["ndcg"].mean())

    network = sasrec.SASRecConfig(
        max_len=config.max_len,
        hidden=config.hidden,
        blocks=config.blocks,
        heads=config.heads,
        dropout=config.dropout,
        lr=config.lr,
        batch_size=config.batch_size,
        max_epochs=config.max_epochs,
        patience=config.patience,
        seed=config.seed,
    )
    fitted = sasrec_training.fit(
        train,
        n_items,
        network,
        validate if held.size else None,
        say,
        budget_s=config.max_minutes * 60.0,
    )
    info = {
        "epochs": fitted.epochs,
        "best_epoch": fitted.best_epoch,
        "valid_ndcg": round(fitted.best_valid, 6) if held.size else None,
        "valid_users": int(held.size),
        "sequences": len(sequences),
        "seconds": round(fitted.seconds, 1),
    }
    return SequenceRecommender(fitted.model, trained, info)
