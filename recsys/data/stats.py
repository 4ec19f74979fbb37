"""Data stage: summary figures of a Dataset (sizes, density, activity, time range) for the CLI."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.timestamps import format_time
from recsys.schema import ITEM_IDX, TIMESTAMP, USER_IDX


def dataset_stats(dataset: Dataset) -> dict:
    """Plain-JSON figures about a dataset; per-user/per-item spreads count zeros too."""
    frame = dataset.interactions
    n_users, n_items, n = dataset.n_users, dataset.n_items, frame.height
    per_user = np.bincount(frame[USER_IDX].to_numpy(), minlength=n_users)  # (n_users,)
    per_item = np.bincount(frame[ITEM_IDX].to_numpy(), minlength=n_items)  # (n_items,)
    return {
        "source": dataset.source,
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "density": n / (n_users * n_items) if n_users and n_items else 0.0,
        "distinct_pairs": frame.select(USER_IDX, ITEM_IDX).unique().height,
        "users_without_interactions": int((per_user == 0).sum()),
        "items_without_interactions": int((per_item == 0).sum()),
        "users_with_profile_text": _with_text(dataset.users, dataset.user_text_columns),
        "items_with_text": _with_text(dataset.items, dataset.item_text_columns),
        "item_text_columns": list(dataset.item_text_columns),
        "user_text_columns": list(dataset.user_text_columns),
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "time_range": _time_range(frame),
    }


def _with_text(table: pl.DataFrame, columns: list[str]) -> int:
    """Rows with at least one non-blank text column."""
    if not columns or table.height == 0:
        return 0
    has_text = pl.any_horizontal([pl.col(c).str.strip_chars().str.len_chars() > 0 for c in columns])
    return int(table.select(has_text.sum()).item())


def _spread(counts: np.ndarray) -> dict:
    if counts.size == 0:
        return {"min": 0, "median": 0.0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "max": int(counts.max()),
    }


def _time_range(frame: pl.DataFrame) -> dict:
    if frame.height == 0:
        return {"first": None, "last": None}
    stamps = frame[TIMESTAMP]
    return {"first": format_time(stamps.min()), "last": format_time(stamps.max())}


def format_stats(stats: dict) -> str:
    """Aligned 'name: value' lines for the terminal."""
    lines = []
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "(none)"
        lines.append(f"{key.replace('_', ' '):<28} {_fmt(value)}")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6f}" if abs(value) < 0.01 else f"{value:,.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
