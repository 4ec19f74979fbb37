"""Evaluation stage: example lists for the offline A/B report. Reads user ids, histories, held-out
items and each variant's top-k (external item ids) plus item titles; writes a few ExampleLists
(a seeded random sample of users, so the handful shown is not cherry-picked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.schema import ITEM_ID

TITLE_COLUMN = "title"


@dataclass(frozen=True)
class ExampleList:
    """One sampled user: what they did, what was held out, what each variant showed."""

    user_id: str
    history: list[str]  # titles, most recent first, at most `max_history`
    history_total: int  # interactions in the full history
    held_out: list[str]  # titles of the held-out items
    lists: dict[str, list[tuple[str, bool]]]  # variant name -> [(title, is a held-out item)]


def sample_rows(n_users: int, n: int, seed: int) -> np.ndarray:
    """Up to n distinct user rows (sorted), drawn uniformly with the report's seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_users, size=min(n, n_users), replace=False))


def example_lists(
    user_ids: Sequence[str],
    histories: Sequence[Sequence[str]],
    held_out: Sequence[Sequence[str]],
    ranked: Mapping[str, Sequence[Sequence[str]]],
    titles: Mapping[str, str],
    max_history: int = 10,
) -> list[ExampleList]:
    """ExampleLists of the given users; histories in time order (oldest first), ranked lists
    {variant: per user, top-k item ids}; an item without a title is shown by its id."""
    out = []
    for row, user_id in enumerate(user_ids):
        history = list(histories[row])
        relevant = set(held_out[row])
        lists = {
            name: [(titles.get(i, i), i in relevant) for i in lists_[row]]
            for name, lists_ in ranked.items()
        }
        out.append(
            ExampleList(
                user_id=str(user_id),
                history=[titles.get(i, i) for i in reversed(history[-max_history:])],
                history_total=len(history),
                held_out=[titles.get(i, i) for i in held_out[row]],
                lists=lists,
            )
        )
    return out


def item_titles(items: pl.DataFrame, text_columns: Sequence[str]) -> dict[str, str]:
    """item_id -> a short display name: the title column, else the first text column, else
    nothing (the id is shown)."""
    column = TITLE_COLUMN if TITLE_COLUMN in items.columns else next(iter(text_columns), None)
    if column is None or column not in items.columns:
        return {}
    frame = items.select(pl.col(ITEM_ID).cast(pl.Utf8), pl.col(column).cast(pl.Utf8))
    return {i: t for i, t in frame.iter_rows() if t}
