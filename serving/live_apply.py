"""Serving stage: answers with the live store applied (reads a served model and the worker's
LiveView; writes nothing) — hidden items filtered out of every answer, a user's events appended to
their history (and excluded), overlay items merged in by text score.

A plain known-user request stays on the precomputed list, only filtered (it asks the list for
k + hidden + event items, so filtering never shortens it): hidden items and the user's event
items leave it, the rest keep their order. Any other request of a user with events is ranked from
the stored history plus the events (the sequence tower re-encodes from it). With [live]
rerank_on_events, a plain request of a user with events is ranked that way too, once per event
(LiveView.ranked keeps the list until the next one; later plain requests only filter it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.errors import RequestError
from recsys.serving.live_view import LiveView

RERANK_DEPTH = 100  # a re-ranked list of a user with events is kept this deep (or k + hidden)


@dataclass(frozen=True)
class _Asked:
    """What a request asked that placing overlay items reads."""

    k: int
    user_id: str | None
    item_ids: Sequence[str]  # the history encoded: request items + events ([]: a stored list)
    profile_text: str | None
    exclude: Sequence[str]
    filters: Sequence[tuple[str, str]]


def recommend(
    model: Any,
    view: LiveView,
    *,
    user_id: str | None = None,
    item_ids: Sequence[str] = (),
    profile_text: str | None = None,
    k: int = 10,
    exclude: Sequence[str] = (),
    filters: Sequence[tuple[str, str]] = (),
    explain: bool = False,
) -> dict[str, Any]:
    """model.recommend's answer with the live store applied (same keywords, same shape)."""
    view.sync()
    hidden, hidden_idx = view.hidden_in(model)
    user = view.user_events(model, user_id)
    seq, events = user.seq, user.items
    plain = not (item_ids or profile_text is not None or exclude or filters or explain)
    depth = k + len(hidden) + len(events)  # what filtering may remove from a stored list
    topk = getattr(model, "topk", None)
    user_idx = model.users.get_idx(user_id) if user_id is not None else -1
    vector, encode = None, [*item_ids, *events]
    if plain and events and view.config.rerank_on_events:
        result, vector = _reranked(model, view, user_id, seq, events, depth)
    elif plain and (user_idx >= 0 or not events) and topk is not None and depth <= topk.k:
        if user_idx >= 0:  # read the stored list only as deep as filtering needs
            depth = _stored_depth(topk.item_idx[user_idx], k, hidden_idx, user.idx)
        result, encode = model.recommend(user_id=user_id, k=depth), []  # filtered below
    else:
        patched = view.patched(model) if filters else {}
        result = model.recommend(
            user_id=user_id,
            item_ids=encode,
            profile_text=profile_text,
            k=k,
            exclude=[*exclude, *hidden],
            filters=filters,
            explain=explain,
            **({"field_overrides": patched} if patched else {}),  # only models that patch
        )
        unknown = set(result.get("unknown_item_ids", ())) - set(events)
        result["unknown_item_ids"] = [i for i in item_ids if i in unknown]
    drop = view.hidden.union(events)
    items = [it for it in result["items"] if it["item_id"] not in drop]
    out = {k_: v for k_, v in result.items() if k_ not in ("depth", "vector")}
    asked = _Asked(k, user_id, encode, profile_text, exclude, filters)
    out["items"] = _with_overlay(model, view, items, asked, user.every, vector)
    return out


def _stored_depth(top: np.ndarray, k: int, hidden: frozenset[int], events: frozenset[int]) -> int:
    """How deep a user's precomputed list `top` ((K,) item_idx, -1 pads at the end) must be
    read for k items to be left once hidden and event items are filtered out (at most K)."""
    if not hidden and not events:
        return k
    kept = 0
    for depth, idx in enumerate(top.tolist(), start=1):  # stops after k + what it drops
        kept += idx not in hidden and idx not in events
        if kept == k:
            return depth
    return len(top)


def _reranked(model, view, user_id, seq, events, depth) -> tuple[dict[str, Any], Any]:
    """[live] rerank_on_events: the user's list ranked from history + events, once per event
    (kept by the view until the next one); later plain requests only filter it."""
    from recsys.ranking.overlay import user_text_vector  # the model stack: in the worker

    result = view.ranked(model.version, user_id, seq)
    ranked = "cached"
    if result is None or result["depth"] < depth:
        result = model.recommend(user_id=user_id, item_ids=events, k=max(depth, RERANK_DEPTH))
        result["depth"] = max(depth, RERANK_DEPTH)
        result["vector"] = user_text_vector(model, user_id, events, None)
        view.keep_ranked(model.version, user_id, seq, result)
        ranked = "live"
    return {**result, "ranked": ranked}, result["vector"]


def _with_overlay(model, view, items, asked: _Asked, event_items, vector):
    """The answer with overlay items placed by their text score (none: the answer cut to k);
    `vector` is the user's text vector when already known (a re-ranked list's), else None."""
    from recsys.ranking.overlay import merge_ranked, user_text_vector

    overlay = view.overlay(model)
    if not len(overlay):
        return items[: asked.k]
    if vector is None:
        vector = user_text_vector(model, asked.user_id, asked.item_ids, asked.profile_text)
    if vector is None:
        return items[: asked.k]
    scores = overlay.vectors @ vector  # (m,) cosine, as the text source scores
    # what may not be answered scores -inf (merge_ranked skips it): looked up, not scanned
    skip = view.hidden | set(asked.exclude) | set(asked.item_ids) | event_items
    rows = [overlay.position[i] for i in skip if i in overlay.position]
    if asked.filters:
        rows += [j for j, f in enumerate(overlay.fields) if not _passes(f, asked.filters, model)]
    if rows:
        scores[rows] = -np.inf
    return merge_ranked(items, overlay.ids, scores, asked.k)


def _passes(fields: dict, filters: Sequence[tuple[str, str]], model: Any) -> bool:
    """The filters as the bundle applies them: the value contained in the column, any case."""
    for field, value in filters:
        if field not in model.filter_fields:
            raise RequestError(
                f"unknown filter field {field!r}; expected one of {model.filter_fields}"
            )
        if value.lower() not in str(fields.get(field) or "").lower():
            return False
    return True


def similar(model: Any, view: LiveView, item_id: str, k: int) -> list[dict[str, Any]] | None:
    """Items most like a bundle or overlay item, hidden ones left out; None when the item is
    unknown or hidden."""
    view.sync()
    if item_id in view.hidden:
        return None
    overlay = view.overlay(model)
    if not model.has_item(item_id) and item_id not in overlay.ids:
        return None
    if not len(overlay) and not view.hidden:
        return model.similar(item_id, k=k)
    from recsys.ranking.overlay import similar as overlay_similar

    return overlay_similar(model, overlay, item_id, k, view.hidden)
