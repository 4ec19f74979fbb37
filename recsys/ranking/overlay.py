"""Ranking stage, serving side: items added between nightlies (the live overlay) beside a loaded
bundle — embedded by the bundle's own item tower, searched by cosine beside its item vectors,
merged into its answers. Reads a RecommenderModel and overlay rows; writes nothing.

An overlay item has a text score only (no interactions, so no collaborative or popularity score):
in a ranked list it is placed above the first result whose text score it beats, taking that
result's blended score (ties keep the list's order); in similar-items both sides are cosine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.config import TextConfig
from recsys.errors import RequestError
from recsys.ranking.base import top_k
from recsys.ranking.model import RecommenderModel
from recsys.sources import SOURCES
from recsys.text.documents import documents_of
from recsys.vectors import normalize_rows


class NoItemTower(RequestError):
    """The served bundle has no text source with an item tower: new items cannot be embedded."""

    status = 409


@dataclass(frozen=True)
class Overlay:
    """One bundle's overlay: items it does not contain, their vectors in its tower's space."""

    ids: list[str] = field(default_factory=list)  # (m,)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (m, dim)
    fields: list[Mapping[str, str | None]] = field(default_factory=list)  # (m,) text columns
    position: dict[str, int] = field(init=False, repr=False, compare=False)  # id -> row

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", {item_id: j for j, item_id in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)


def text_source(model: RecommenderModel) -> Any | None:
    """The bundle's ContentRecommender (item vectors + user encoder), or None."""
    source = model.ranker.sources.get("text")
    return source if getattr(source, "item_vectors", None) is not None else None


def item_tower(model: RecommenderModel) -> Any:
    """The TwoTowerEncoder whose item tower embedded the bundle's items. Raises NoItemTower."""
    encoder = getattr(getattr(text_source(model), "user_encoder", None), "encoder", None)
    if encoder is None or not hasattr(encoder, "encode_items"):
        raise NoItemTower(
            f"bundle {model.version} has no trained item tower (sources {model.ranker.names}); "
            "new items can be added only to a bundle with a two-tower text source"
        )
    return encoder


def embed_items(
    model: RecommenderModel,
    rows: Sequence[Mapping[str, str | None]],
    text: TextConfig,
    item_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """(m, dim) unit vectors of items given as {column: text}, documents written as the nightly
    writes them, embedded by the bundle's item tower. item_ids (m,): an item the tower learned an
    id vector for keeps it when its text changes; None: text only."""
    if not rows:
        return np.zeros((0, text_source(model).dim if text_source(model) else 0), np.float32)
    encoder = item_tower(model)
    docs = documents_of(rows, model.filter_fields, text)
    vectors = encoder.encode_items(docs, item_ids=item_ids)
    return normalize_rows(np.asarray(vectors, dtype=np.float32))


def user_text_vector(
    model: RecommenderModel, user_id: str | None, item_ids: Sequence[str], profile: str | None
) -> np.ndarray | None:
    """(dim,) the text source's user vector for a request (precomputed for a plain known user,
    encoded otherwise), or None when the bundle has no text source or nothing to encode."""
    source = text_source(model)
    if source is None:
        return None
    user_idx = model.users.get_idx(user_id) if user_id is not None else -1
    if user_idx >= 0 and not item_ids and profile is None:  # a plain known user: stored vector
        vector = source.stored_user_vector(user_idx, model.history(user_idx))
        if vector is not None:
            return vector if vector.any() else None
    query, _ = model.query_for(user_id, item_ids, profile)
    vector = source.user_vectors([query])[0]
    return vector if vector.any() else None


def merge_ranked(
    items: list[dict[str, Any]], ids: Sequence[str], scores: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """`items` (a ranked answer, best first, each with sources.text) with overlay items `ids`
    (text scores `scores`, (m,)) placed by text score, cut to k.

    Only the k best overlay items can reach the answer (a lower-scored one is always placed after
    a higher-scored one), and once one finds no place in a full list none after it does: the
    work per request is O(k^2), not O(m k), however large the overlay grows."""
    out = list(items)
    texts = [_text(it) for it in out]  # (len(out),) text score of each result, None if none
    for j in _best_first(scores, k):
        score = float(scores[j])
        if not np.isfinite(score):
            continue
        at = next((n for n, t in enumerate(texts) if t is not None and t < score), None)
        if at is None:
            if len(out) >= k:
                break  # full, and every later overlay item scores no higher
            at, blended = len(out), (out[-1]["score"] if out else score)
        else:
            blended = out[at]["score"]
        entry = {"item_id": ids[j], "score": blended, "sources": dict.fromkeys(SOURCES)}
        entry["sources"]["text"] = score
        out.insert(at, entry)
        texts.insert(at, score)
    return out[:k]


def _best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest of `scores` (m,), best first, ties in index order; NaN last."""
    order = np.where(np.isnan(scores), -np.inf, scores)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(order) > 8 * k:  # a partition first pays only on a large overlay
        part = np.argpartition(-order, k - 1)[:k]  # the k best, unordered
        threshold = order[part].min()
        part = np.flatnonzero(order >= threshold)  # every tie at the cut, in index order
        return part[np.argsort(-order[part], kind="stable")][:k]
    return np.argsort(-order, kind="stable")


def _text(item: dict[str, Any]) -> float | None:
    value = (item.get("sources") or {}).get("text")
    return None if value is None or not math.isfinite(value) else float(value)


def similar(
    model: RecommenderModel, overlay: Overlay, item_id: str, k: int, hidden: frozenset[str]
) -> list[dict[str, Any]]:
    """Item-to-item over the bundle's items and the overlay (cosine both), hidden items left out.
    `item_id` is a bundle item or an overlay item. KeyError when it is neither."""
    source = text_source(model)
    own = overlay.ids.index(item_id) if item_id in overlay.ids else -1
    if own < 0 and model.has_item(item_id):
        room = k + len(hidden) + 1
        found = [it for it in model.similar(item_id, k=room) if it["item_id"] not in hidden]
        if source is None or not len(overlay):
            return found[:k]
        query = source.item_vectors[model.item_map.to_idx(item_id)]  # (dim,)
    elif own >= 0 and source is not None:
        query = overlay.vectors[own]
        scores = source.item_vectors @ query  # (n_items,) cosine over the bundle
        idx, values = top_k(scores[None, :], min(k + len(hidden), len(scores)))
        found = [
            {"item_id": model.item_map.to_id(i), "score": float(v)}
            for i, v in zip(idx[0], values[0], strict=True)
            if i >= 0 and model.item_map.to_id(i) not in hidden
        ]
    else:
        raise KeyError(item_id)
    extra = overlay.vectors @ query if len(overlay) else np.zeros(0, np.float32)  # (m,)
    found += [
        {"item_id": other, "score": float(extra[j])}
        for j, other in enumerate(overlay.ids)
        if j != own and other not in hidden
    ]
    found.sort(key=lambda it: -it["score"])
    return found[:k]
