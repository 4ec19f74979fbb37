"""Ranking stage: explanations — the history item that most supports each recommendation.

Reads item-tower vectors (n_items, dim), the queries' histories and the recommended items; writes
nothing. "Because you liked X": X = argmax over the history of cosine(history item, recommended).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.vectors import normalize_rows


def explain_with_history(
    item_vectors: np.ndarray, histories: Sequence[np.ndarray], recommended: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per recommended item, the most similar history item and the cosine between them.

    recommended: (n, k) item_idx padded with -1. Returns because (n, k) int64 (-1 when there is
    no history or no item) and similarity (n, k) float32 (NaN where because is -1). Ties go to
    the most recent history item: it is the likelier reason.
    """
    n_items = item_vectors.shape[0]
    unit = normalize_rows(item_vectors, item_vectors.dtype)  # (n_items, dim)
    because = np.full(recommended.shape, -1, dtype=np.int64)
    similarity = np.full(recommended.shape, np.nan, dtype=np.float32)
    for row, history in enumerate(histories):
        history = np.asarray(history, dtype=np.int64)
        history = history[(history >= 0) & (history < n_items)][::-1]  # newest first
        targets = recommended[row]
        ok = (targets >= 0) & (targets < n_items)
        if history.size == 0 or not ok.any():
            continue
        cos = unit[history] @ unit[targets[ok]].T  # (h, n_ok)
        best = cos.argmax(axis=0)  # first max = newest among ties
        because[row, ok] = history[best]
        similarity[row, ok] = cos[best, np.arange(best.size)]
    return because, similarity
