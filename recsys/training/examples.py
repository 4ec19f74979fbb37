"""Training stage: examples from interactions — per-user sequences, windows, pairs, batches.

Reads interaction frames (split.train / split.valid); writes numpy arrays. No model, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX


def user_sequences(interactions: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """item_idx of each user's interactions, oldest first (ties by ROW). Index = user_idx."""
    missing = [c for c in (USER_IDX, ITEM_IDX, TIMESTAMP, ROW) if c not in interactions.columns]
    if missing:
        raise ValueError(
            f"interactions: expected columns {USER_IDX}, {ITEM_IDX}, {TIMESTAMP}, {ROW}; "
            f"missing {missing}, found {interactions.columns}"
        )
    frame = interactions.sort([USER_IDX, TIMESTAMP, ROW])
    users = frame[USER_IDX].to_numpy()
    items = frame[ITEM_IDX].to_numpy().astype(np.int64)
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"interactions: user_idx out of range [0, {n_users}): {users.max()}")
    bounds = np.searchsorted(users, np.arange(n_users + 1))  # (n_users + 1,)
    return [items[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def sequence_windows(
    sequences: Sequence[np.ndarray], history_len: int, has_profile: np.ndarray
) -> np.ndarray:
    """Training windows (user, start, stop) over each sequence, cut from the newest end in
    chunks of history_len + 1 items: every item is a target exactly once (the first item only
    when the user has a profile, which predicts it). Shape (n_windows, 3), int64."""
    rows: list[tuple[int, int, int]] = []
    for user, seq in enumerate(sequences):
        stop = len(seq)
        first_target = 0 if has_profile[user] else 1
        while stop > first_target:
            start = max(0, stop - history_len - 1)
            rows.append((user, start, stop))
            stop = start + 1 if start > 0 else 0  # the window's first item is the next's target
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def pair_examples(
    sequences: Sequence[np.ndarray], has_profile: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) of every (history -> next item) example: the item at `position` is the
    target, the items before it the history. Returns users (n,), positions (n,) int64."""
    users, positions = [], []
    for user, seq in enumerate(sequences):
        first = 0 if has_profile[user] else 1
        if len(seq) > first:
            users.append(np.full(len(seq) - first, user, dtype=np.int64))
            positions.append(np.arange(first, len(seq), dtype=np.int64))
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(positions)


def item_log_q(targets: np.ndarray, n_items: int, batch_size: int) -> np.ndarray:
    """log P(item appears in a batch of `batch_size` training targets), the logQ correction.
    Items never seen as a target get the probability of a single occurrence. Shape (n_items,)."""
    counts = np.bincount(targets, minlength=n_items).astype(np.float64)  # (n_items,)
    p = np.maximum(counts, 1.0) / max(len(targets), 1)
    q = -np.expm1(batch_size * np.log1p(-np.minimum(p, 1.0 - 1e-12)))  # 1 - (1 - p)^batch
    return np.log(q).astype(np.float32)


def window_batch(
    sequences: Sequence[np.ndarray], windows: np.ndarray, has_profile: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs and targets of causal training for windows (b, 3) of (user, start, stop).
    Inputs are seq[start:stop-1] (right-padded), targets (b, n + 1) are the item after each
    state: slot 0 (profile) -> seq[start], state t -> seq[start + t]; -1 where there is no
    target: padding, and slot 0 unless the window starts the sequence of a user with a profile."""
    longest = int(max((windows[:, 2] - windows[:, 1]).max() - 1, 1))
    inputs = np.zeros((len(windows), longest), dtype=np.int64)  # (b, n)
    mask = np.zeros((len(windows), longest), dtype=bool)
    targets = np.full((len(windows), longest + 1), -1, dtype=np.int64)  # (b, n + 1)
    for row, (user, start, stop) in enumerate(windows):
        chunk = sequences[user][start:stop]
        inputs[row, : len(chunk) - 1] = chunk[:-1]
        mask[row, : len(chunk) - 1] = True
        targets[row, : len(chunk)] = chunk
        if start > 0 or not has_profile[user]:
            targets[row, 0] = -1
    return torch.from_numpy(inputs), torch.from_numpy(mask), torch.from_numpy(targets)
