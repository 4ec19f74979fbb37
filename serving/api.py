"""Serving stage: the /v1 blueprint — top-k for users, anonymous sessions and similar items (reads
the holder's current snapshot; writes the exposure log)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError

from recsys.errors import RequestError
from recsys.serving import live_apply
from recsys.serving.errors import ApiError, describe_validation
from recsys.serving.holder import Served
from recsys.serving.schemas import ID_PATTERN, split_filters
from recsys.serving.state import state

api = Blueprint("api", __name__, url_prefix="/v1")
_ID = re.compile(ID_PATTERN)
PARSED_MAX_ENTRIES, PARSED_MAX_BYTES = 1024, 256  # the query-string cache of _parse_query
_PARSED: dict[tuple[type, bytes], Any] = {}  # (query model, raw query string) -> parsed query
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # as Flask's compact jsonify


@api.get("/users/<user_id>/recommendations")
def user_recommendations(user_id: str) -> Response:
    _check_id(user_id, "path.user_id")
    query = _parse_query(state().models.user_query)
    served = _route(user_id)
    view = state().live_view
    result = _timed(
        served,
        lambda m: live_apply.recommend(
            m,
            view,
            user_id=user_id,
            k=query.k,
            exclude=query.exclude,
            filters=split_filters(query.filter),
            explain=query.explain,
        ),
    )
    return _recommendation_response(served, user_id, query.k, result)


@api.post("/recommendations")
def anonymous_recommendations() -> Response:
    payload = _json_body()
    try:
        body = state().models.body.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", describe_validation(exc, "body")) from None
    served = _route(body.user_id)
    view = state().live_view
    result = _timed(
        served,
        lambda m: live_apply.recommend(
            m,
            view,
            item_ids=body.item_ids,
            profile_text=body.profile_text,
            k=body.k,
            exclude=body.exclude,
            filters=split_filters(body.filters),
            explain=body.explain,
        ),
    )
    return _recommendation_response(served, body.user_id, body.k, result)


@api.get("/items/<item_id>/similar")
def similar_items(item_id: str) -> Response:
    _check_id(item_id, "path.item_id")
    query = _parse_query(state().models.similar_query)
    served = _route(query.user_id)
    items = _timed(served, lambda m: live_apply.similar(m, state().live_view, item_id, query.k))
    if items is None:
        where = f"bundle {served.version} or the live overlay (or it is hidden)"
        raise ApiError(404, "unknown_item", f"item {item_id!r} is not in {where}")
    return jsonify(
        bundle=served.version,
        variant=g.variant,
        item_id=item_id,
        k=query.k,
        items=[
            {"item_id": it["item_id"], "score": float(it["score"])}
            for it in items
            if math.isfinite(it["score"])
        ],
    )


def _json_body() -> Any:
    """The parsed JSON body: 415 if not declared JSON, 413 if too large, 400 if malformed."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type application/json, found {request.content_type or 'none'!r}",
        )
    raw = request.get_data(cache=False)  # raises 413 beyond MAX_CONTENT_LENGTH
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"body: not valid JSON: {exc}") from None


def _check_id(value: str, where: str) -> None:
    if not _ID.match(value):
        raise ApiError(
            422,
            "validation_error",
            f"{where}: expected an id matching {ID_PATTERN} (found {value[:80]!r})",
        )


def _parse_query(model: type[BaseModel]) -> Any:
    """Query string -> model; list fields take repeated parameters, others must appear once.
    A short query string parsed before is answered from a bounded cache (the models are frozen,
    and most requests repeat a handful of query strings such as `k=10`)."""
    key = (model, request.query_string)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = _parse_query_args(model)
        if len(request.query_string) <= PARSED_MAX_BYTES:
            if len(_PARSED) >= PARSED_MAX_ENTRIES:
                _PARSED.clear()  # crude but bounded: a burst of distinct strings starts over
            _PARSED[key] = parsed
    return parsed


def _parse_query_args(model: type[BaseModel]) -> Any:
    raw: dict[str, Any] = {}
    for name in request.args:
        values = request.args.getlist(name)
        field = model.model_fields.get(name)
        is_list = field is not None and getattr(field.annotation, "__origin__", None) is list
        if not is_list and len(values) > 1:
            raise ApiError(422, "validation_error", f"query.{name}: given {len(values)} times")
        raw[name] = values if is_list else values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", describe_validation(exc, "query")) from None


def _route(user_id: str | None) -> Served:
    """The request's variant and the model serving it, read once from the current snapshot."""
    routed = state().holder.route(state().router.assign(user_id))  # control if not loaded
    if routed is None:
        raise ApiError(503, "not_ready", "no verified bundle is loaded yet; see /readyz")
    g.variant, served = routed
    return served


def _timed(served: Served, call: Callable[[Any], Any]) -> Any:
    started = time.perf_counter()
    try:
        result = call(served.model)
    except RequestError as exc:  # the request asks what the model cannot answer (a filter on
        raise ApiError(exc.status, "validation_error", str(exc)) from None  # an unknown field)
    # any other exception is the server's fault: serving.errors answers it with a 500
    elapsed = time.perf_counter() - started
    g.rank_seconds = elapsed
    metrics = state().metrics
    metrics.child(metrics.rank_time, g.variant).observe(elapsed)
    return result


def _item(item: dict[str, Any]) -> dict[str, Any]:
    """An answer item in the documented field order. The model's items already carry every
    source name with a finite float or None (RecommenderModel._items, overlay.merge_ranked)."""
    return {
        "item_id": item["item_id"],
        "score": float(item["score"]),
        "sources": item["sources"],
        "because": item.get("because"),
    }


def _recommendation_response(
    served: Served, user_id: str | None, k: int, result: dict[str, Any]
) -> Response:
    items = [_item(it) for it in result["items"] if math.isfinite(it["score"])]
    st, variant = state(), g.variant
    answers = st.metrics.answers
    st.metrics.child(answers, variant, result["path"], result.get("ranked", "live")).inc()
    if st.exposure is not None:
        st.exposure.write(
            user_id=user_id,
            variant=variant,
            bundle=served.version,
            item_ids=[it["item_id"] for it in items],
            scores=[it["score"] for it in items],
        )
    return _json(
        bundle=served.version,
        variant=variant,
        user_id=user_id,
        path=result["path"],
        cold_start=result["path"] != "known",
        k=k,
        items=items,
        unknown_item_ids=list(result.get("unknown_item_ids", [])),
    )


def _json(**payload: Any) -> Response:
    """jsonify's compact output, with one encoder for all answers (jsonify builds one per call;
    this is the hot path of every recommendation): the payload holds JSON types only."""
    return current_app.response_class(_ENCODE(payload) + "\n", mimetype="application/json")
