"""Serving stage: the live write routes behind a bearer token — PUT /v1/items/{id} (an overlay
item, embedded by the served bundle's item tower), PATCH /v1/items/{id} (some columns of a bundle
or overlay item: what filters read), POST /v1/items/{id}/hide|unhide, POST /v1/events
(writes the live store, recsys.live_store; every worker reads it, serving/live_view.py).

Each request is validated whole before anything is written, and written in one transaction:
nothing is ever partially applied.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify
from pydantic import TypeAdapter, ValidationError

from recsys.serving.api import _check_id, _json_body, _route
from recsys.serving.auth import require_bearer
from recsys.serving.errors import ApiError, describe_validation
from recsys.serving.schemas import LiveEvent
from recsys.serving.state import state

live = Blueprint("live", __name__, url_prefix="/v1")
_EVENTS = TypeAdapter(list[LiveEvent])


def _authorize() -> None:
    """No token configured: the write routes do not exist (404). Otherwise a matching bearer."""
    disabled = f"live write routes are disabled: ${state().live.token_env} is not set"
    require_bearer(state().live_token, disabled, "token", "recsys-live")


@live.put("/items/<item_id>")
def put_item(item_id: str) -> Response:
    """An item's text columns -> embedded now, recommendable by every worker within the poll."""
    _authorize()
    _check_id(item_id, "path.item_id")
    fields = _item_fields(_json_body())
    served = _route(None)
    vector = _embed(served, item_id, fields)
    seq = state().live_store.upsert_item(item_id, fields, vector, served.version)
    state().live_view.sync(force=True)
    return jsonify(
        item_id=item_id, bundle=served.version, in_bundle=served.model.has_item(item_id), seq=seq
    )


def _embed(served, item_id: str, fields: dict[str, str]):
    """(dim,) the item's vector from the served bundle's item tower (409 when it has none)."""
    from recsys.ranking.overlay import embed_items  # torch only where items are embedded

    try:
        return embed_items(served.model, [fields], state().text, [item_id])[0]
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status is None:
            raise
        raise ApiError(status, "no_item_tower", str(exc)) from None


def _item_fields(body: object) -> dict[str, str]:
    """{column: text}: columns the served bundle's items have, each with a non-blank text of at
    most [live] max_text_chars characters (what the OpenAPI document says, exactly)."""
    model = _route(None).model
    if not isinstance(body, dict):
        raise ApiError(
            422, "validation_error", f"body: expected an object of text columns, found {body!r:.80}"
        )
    limit = state().live.max_text_chars
    if not body:
        raise ApiError(
            422, "validation_error", f"body: expected some of the columns {model.filter_fields}"
        )
    for name, value in body.items():
        _check_column(model, name)
        if not isinstance(value, str) or _blank(value):
            raise ApiError(
                422, "validation_error", f"body.{name}: expected non-blank text, not {value!r:.60}"
            )
        _check_length(name, value, limit)
    return {name: body[name] for name in model.filter_fields if name in body}


def _check_column(model, name: str) -> None:
    """422 unless `name` is one of the served bundle's item columns."""
    if name not in model.filter_fields:
        raise ApiError(
            422,
            "validation_error",
            f"body.{name:.40}: unknown field; expected some of {model.filter_fields}",
        )


def _check_length(name: str, value: str, limit: int) -> None:
    """422 when a text is longer than [live] max_text_chars (counted as in _length)."""
    if _length(value) > limit:
        raise ApiError(
            422, "validation_error", f"body.{name}: {len(value)} characters; at most {limit}"
        )


@live.patch("/items/<item_id>")
def patch_item(item_id: str) -> Response:
    """Some columns of a bundle or overlay item (text, or null to clear) -> what every worker's
    filters read within the poll. An overlay item is embedded again from its patched text; a
    bundle item keeps the bundle's vector until the nightly, which reads the patched columns."""
    _authorize()
    _check_id(item_id, "path.item_id")
    served, view = _route(None), state().live_view
    model = served.model
    patch = _patch_fields(_json_body(), model)
    view.sync(force=True)
    row = view.items.get(item_id)
    stored = row.fields if row is not None else None
    if model.has_item(item_id):
        fields = _merged(stored if stored is not None else _bundle_columns(model, item_id), patch)
        seq = state().live_store.set_fields(item_id, fields)
    elif stored is not None:
        fields = _merged(stored, patch)
        if not fields:
            raise ApiError(
                422, "validation_error", f"body: would leave overlay item {item_id!r} no text"
            )
        vector = _embed(served, item_id, fields)
        seq = state().live_store.upsert_item(item_id, fields, vector, served.version)
    else:
        where = f"bundle {served.version} or the live overlay"
        raise ApiError(404, "unknown_item", f"item {item_id!r} is not in {where}")
    view.sync(force=True)
    return jsonify(
        item_id=item_id, bundle=served.version, in_bundle=model.has_item(item_id), seq=seq,
        fields=fields,
    )  # fmt: skip


def _patch_fields(body: object, model) -> dict[str, str | None]:
    """{column: text or null}: some of the served bundle's columns, text of at most [live]
    max_text_chars characters, null clearing the column."""
    if not isinstance(body, dict) or not body:
        raise ApiError(
            422,
            "validation_error",
            f"body: expected an object with some of the columns {model.filter_fields}, "
            f"found {body!r:.80}",
        )
    limit = state().live.max_text_chars
    for name, value in body.items():
        _check_column(model, name)
        if value is not None and not isinstance(value, str):
            raise ApiError(
                422, "validation_error", f"body.{name}: expected text or null, not {value!r:.60}"
            )
        if value is not None:
            _check_length(name, value, limit)
    return body


# White space as the OpenAPI document's `pattern: "\\S"` means it (ECMA-262 WhiteSpace and
# LineTerminator). Python's str.isspace() also counts U+001C-U+001F and U+0085, so text such as
# "\x1f" is valid by the document: it must be accepted, not called blank.
_ECMA_SPACE = frozenset(
    "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(map(chr, range(0x2000, 0x200B)))
)


def _blank(text: str) -> bool:
    """True when every character is white space in the document's (ECMA) sense."""
    return all(ch in _ECMA_SPACE for ch in text)


def _length(text: str) -> int:
    """Characters as UTF-16 code units: never fewer than the client counted (JSON's "\\ud83d"
    escapes: two lone surrogates a client counts as two decode into one character here)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _bundle_columns(model, item_id: str) -> dict[str, str | None]:
    """A bundle item's columns as the bundle has them."""
    row = model.items.row(model.item_map.to_idx(item_id), named=True)
    return {name: row[name] for name in model.filter_fields}


def _merged(fields: dict, patch: dict) -> dict[str, str | None]:
    """`fields` with `patch` applied: a text replaces the column, null removes it."""
    out = {**fields, **patch}
    return {name: value for name, value in out.items() if value is not None and value != ""}


@live.post("/items/<item_id>/hide")
def hide(item_id: str) -> Response:
    """Removed from every answer of every worker (precomputed lists too) until unhidden."""
    return _set_hidden(item_id, True)


@live.post("/items/<item_id>/unhide")
def unhide(item_id: str) -> Response:
    return _set_hidden(item_id, False)


def _set_hidden(item_id: str, hidden: bool) -> Response:
    _authorize()
    _check_id(item_id, "path.item_id")
    served, view = _route(None), state().live_view
    view.sync(force=True)
    if not view.knows(served.model, item_id):
        where = f"bundle {served.version} or the live overlay"
        raise ApiError(404, "unknown_item", f"item {item_id!r} is not in {where}")
    seq = state().live_store.set_hidden(item_id, hidden)
    view.sync(force=True)
    return jsonify(item_id=item_id, hidden=hidden, seq=seq)


@live.post("/events")
def post_events() -> Response:
    """One event (an object) or a batch (an array), stored durably, used by the next request."""
    _authorize()
    body = _json_body()
    batch = body if isinstance(body, list) else [body]
    limit = state().live.max_events
    if len(batch) > limit or not batch:
        raise ApiError(
            422, "validation_error", f"body: expected 1 to {limit} events, found {len(batch)}"
        )
    try:
        events = _EVENTS.validate_python(batch)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", describe_validation(exc, "body")) from None
    served, view = _route(None), state().live_view
    view.sync()  # within the poll interval; re-read at once only for an item it does not know
    if not all(view.knows(served.model, e.item_id) for e in events):
        view.sync(force=True)
    for n, event in enumerate(events):
        if not view.knows(served.model, event.item_id):
            raise ApiError(
                404,
                "unknown_item",
                f"body[{n}].item_id: {event.item_id!r} is in neither bundle {served.version} nor "
                "the live overlay; PUT /v1/items/{id} first (nothing of this request was stored)",
            )
    now = int(time.time())
    rows = [
        {**e.model_dump(), "timestamp": e.timestamp if e.timestamp is not None else now}
        for e in events
    ]
    first, last = state().live_store.add_events(rows)
    state().metrics.live_events.inc(len(rows))
    view.sync(force=True)
    return jsonify(stored=len(rows), first_seq=first, last_seq=last)
