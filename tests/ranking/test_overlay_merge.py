"""merge_ranked (overlay items placed into a ranked answer by text score): the bounded version
(only the k best overlay items, stopping at the first that finds no place) gives exactly the answer
of placing every overlay item, on random answers with ties, NaN and missing text scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.ranking.overlay import merge_ranked
from recsys.sources import SOURCES


def _every_item(items, ids, scores, k):
    """The unbounded rule: every overlay item, best first (stable), placed above the first result
    whose text score it beats, or appended while the answer is short."""
    out, texts = list(items), [it["sources"].get("text") for it in items]
    for j in np.argsort(-scores, kind="stable"):
        score = float(scores[j])
        if not math.isfinite(score):
            continue
        at = next((n for n, t in enumerate(texts) if t is not None and t < score), None)
        if at is None:
            if len(out) >= k:
                continue
            at, blended = len(out), (out[-1]["score"] if out else score)
        else:
            blended = out[at]["score"]
        entry = {"item_id": ids[j], "score": blended, "sources": dict.fromkeys(SOURCES)}
        entry["sources"]["text"] = score
        out.insert(at, entry)
        texts.insert(at, score)
    return out[:k]


def _answer(rng: np.random.Generator, n: int) -> list[dict]:
    texts = np.sort(rng.choice([0.1, 0.2, 0.3, 0.5, 0.7], size=n))[::-1]
    items = []
    for i, t in enumerate(texts):
        sources = dict.fromkeys(SOURCES)
        sources["text"] = None if rng.random() < 0.2 else float(t)
        items.append({"item_id": f"i{i}", "score": float(n - i), "sources": sources})
    return items


@pytest.mark.parametrize("seed", range(40))
def test_bounded_merge_equals_placing_every_overlay_item(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    items = _answer(rng, int(rng.integers(0, k + 4)))
    m = int(rng.integers(0, 60))
    scores = rng.choice([0.05, 0.2, 0.3, 0.4, 0.6, 0.9, np.nan, -np.inf], size=m).astype(np.float32)
    ids = [f"n{j}" for j in range(m)]
    assert merge_ranked(items, ids, scores, k) == _every_item(items, ids, scores, k)
