"""Serving stage: the OpenAPI 3.1 document of the API, generated from the same pydantic models that
validate requests (reads the app state: max_k, the loaded bundles' filter fields)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from recsys import __version__
from recsys.serving import schemas
from recsys.serving.state import ServingState

_REF = "#/components/schemas/{model}"
_RESPONSES = [
    schemas.RecommendationResponse,
    schemas.SimilarResponse,
    schemas.ErrorResponse,
    schemas.HealthResponse,
    schemas.ReadyResponse,
    schemas.AdminResponse,
    schemas.BareResponse,
    schemas.ItemResponse,
    schemas.PatchResponse,
    schemas.HideResponse,
    schemas.EventsResponse,
]
_ERRORS = {
    400: "malformed request (e.g. the body is not valid JSON)",
    401: "missing or wrong bearer token",
    404: "not found (unknown item, or an event naming one: nothing stored; admin routes when no "
    "admin token is configured)",
    409: "refused: nothing to roll back to, or a bundle failed verification or loading (the old "
    "one keeps serving), or the workers disagree; PUT, PATCH of an overlay item: the bundle has "
    "no item tower",
    413: "request body larger than serving.max_body_bytes",
    415: "the body is not application/json",
    422: "invalid parameters or body: wrong type, out of range, unknown field",
    503: "no verified bundle loaded yet; admin: a worker did not confirm in time",
}


def build_openapi(st: ServingState) -> dict[str, Any]:
    """The document for this app as it runs now (filter fields come from the loaded bundles)."""
    models = st.models
    _, defs = models_json_schema(
        [(m, "validation") for m in (models.body, schemas.LiveEvent)]
        + [(m, "serialization") for m in _RESPONSES],
        ref_template=_REF,
    )
    components = defs["$defs"]
    filter_pattern = _filter_pattern(st)
    components["RecommendationRequest"]["properties"]["filters"]["items"]["pattern"] = (
        filter_pattern
    )
    paths = {
        "/v1/users/{user_id}/recommendations": {"get": _user_recommendations(st, filter_pattern)},
        "/v1/recommendations": {"post": _anonymous_recommendations()},
        "/v1/items/{item_id}/similar": {"get": _similar(st)},
        "/healthz": {"get": _simple("Liveness: the process is up", "HealthResponse", [])},
        "/readyz": {"get": _simple("Readiness: a verified bundle serves", "ReadyResponse", [503])},
        "/metrics": {"get": _metrics()},
        "/openapi.json": {"get": _openapi()},
    }
    if st.admin_token is not None:
        for action, summary in (
            ("reload", "Swap in what the pointers name now"),
            ("rollback", "CURRENT back to the previous bundle, then reload"),
        ):
            paths[f"/admin/{action}"] = {"post": _admin(action, summary)}
    if st.live_token is not None:
        components["ItemText"] = _item_text(st)
        components["ItemPatch"] = _item_patch(components["ItemText"], st.live.max_text_chars)
        paths.update(_live_paths(st.live.max_events))
    if st.bench_routes:
        paths["/v1/_bare"] = {"get": _simple("Benchmark baseline", "BareResponse", [])}
    return {
        "openapi": "3.1.0",
        "info": {"title": "recsys", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _item_text(st: ServingState) -> dict[str, Any]:
    """PUT /v1/items/{id}'s body: text columns every variant's bundle has, each non-blank."""
    snapshot = st.holder.snapshot
    fields = (
        sorted(set.intersection(*(set(s.model.filter_fields) for s in snapshot.served.values())))
        if snapshot is not None
        else []
    )
    text = {"type": "string", "pattern": r"\S", "maxLength": st.live.max_text_chars}
    return {
        "type": "object",
        "description": "the item's text columns (those of the served catalog), as the nightly "
        "reads them; embedded by the served bundle's item tower",
        "properties": dict.fromkeys(fields, text),
        "additionalProperties": False,
        "minProperties": 1,
    }


def _item_patch(text: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """PATCH /v1/items/{id}'s body: some columns, each text or null (clears it)."""
    column = {"type": ["string", "null"], "maxLength": max_chars}
    return {
        **text,
        "description": "some of the item's columns (what filters read): text replaces one, null "
        "clears it; an overlay item is embedded again from its patched text",
        "properties": dict.fromkeys(text["properties"], column),
    }


def _live_paths(max_events: int) -> dict[str, Any]:
    secured = {"security": [{"bearerAuth": []}]}
    events = {
        "oneOf": [
            {"$ref": _REF.format(model="LiveEvent")},
            {
                "type": "array",
                "items": {"$ref": _REF.format(model="LiveEvent")},
                "minItems": 1,
                "maxItems": max_events,
            },
        ]
    }
    paths: dict[str, Any] = {
        "/v1/items/{item_id}": {
            "put": {
                "summary": "Add or replace an item between nightlies (the live overlay)",
                "operationId": "putItem",
                "parameters": [_path_id("item_id")],
                "requestBody": {"required": True, "content": _json("ItemText")},
                "responses": _responses("ItemResponse", [400, 401, 409, 413, 415, 422, 503]),
                **secured,
            },
            "patch": {
                "summary": "Patch columns of a bundle or overlay item (what filters read)",
                "operationId": "patchItem",
                "parameters": [_path_id("item_id")],
                "requestBody": {"required": True, "content": _json("ItemPatch")},
                "responses": _responses("PatchResponse", [400, 401, 404, 409, 413, 415, 422, 503]),
                **secured,
            },
        },
        "/v1/events": {
            "post": {
                "summary": "Store user events (one object or an array); used by the next request",
                "operationId": "postEvents",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": events}},
                },
                "responses": _responses("EventsResponse", [400, 401, 404, 413, 415, 422, 503]),
                **secured,
            }
        },
    }
    for action, summary in (
        ("hide", "Remove an item from every answer of every worker until unhidden"),
        ("unhide", "Restore a hidden item"),
    ):
        paths[f"/v1/items/{{item_id}}/{action}"] = {
            "post": {
                "summary": summary,
                "operationId": f"{action}Item",
                "parameters": [_path_id("item_id")],
                "responses": _responses("HideResponse", [401, 404, 422, 503]),
                **secured,
            }
        }
    return paths


def _filter_pattern(st: ServingState) -> str:
    """Only fields every variant's bundle can filter on, so a documented filter never fails."""
    snapshot = st.holder.snapshot
    if snapshot is None:
        return schemas.FILTER_PATTERN
    common = set.intersection(*(set(s.model.filter_fields) for s in snapshot.served.values()))
    fields = sorted(f for f in common if re.fullmatch(schemas.FIELD_PATTERN, f))
    if not fields:
        return "^(?!)$"  # nothing can be filtered on: no filter value is valid
    return "^(?:" + "|".join(fields) + r"):[^\x00-\x1f\x7f]{1,64}$"


def _query_parameters(model: type[BaseModel], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    out = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if "anyOf" in prop:  # "X or null": in a query string, null is simply leaving it out
            (prop,) = [{**alt, **{k: v for k, v in prop.items() if k != "anyOf"}}
                       for alt in prop["anyOf"] if alt.get("type") != "null"]  # fmt: skip
        if name in overrides:
            prop["items"] = {**prop["items"], **overrides[name]}
        param = {"name": name, "in": "query", "required": False, "schema": prop}
        if prop.get("type") == "array":
            param.update(style="form", explode=True)  # ?exclude=a&exclude=b
        out.append(param)
    return out


def _path_id(name: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": schemas.ID_PATTERN}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}


def _responses(ok: str, errors: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": _json(ok)}}
    for code in errors:
        out[str(code)] = {"description": _ERRORS[code], "content": _json("ErrorResponse")}
    return out


def _user_recommendations(st: ServingState, filter_pattern: str) -> dict[str, Any]:
    return {
        "summary": "Top-k for a user; unknown users get the cold-start path (cold_start=true)",
        "operationId": "userRecommendations",
        "parameters": [_path_id("user_id")]
        + _query_parameters(st.models.user_query, {"filter": {"pattern": filter_pattern}}),
        "responses": _responses("RecommendationResponse", [422, 503]),
    }


def _anonymous_recommendations() -> dict[str, Any]:
    return {
        "summary": "Top-k for an anonymous or new user from recent items and/or profile text",
        "operationId": "anonymousRecommendations",
        "requestBody": {"required": True, "content": _json("RecommendationRequest")},
        "responses": _responses("RecommendationResponse", [400, 413, 415, 422, 503]),
    }


def _similar(st: ServingState) -> dict[str, Any]:
    return {
        "summary": "Items most like one item",
        "operationId": "similarItems",
        "parameters": [_path_id("item_id")] + _query_parameters(st.models.similar_query, {}),
        "responses": _responses("SimilarResponse", [404, 422, 503]),
    }


def _simple(summary: str, ok: str, errors: list[int]) -> dict[str, Any]:
    return {"summary": summary, "responses": _responses(ok, errors)}


def _metrics() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "summary": "Prometheus metrics (text exposition format 0.0.4)",
        "responses": {"200": {"description": "OK", "content": text}},
    }


def _openapi() -> dict[str, Any]:
    doc = {"application/json": {"schema": {"type": "object"}}}
    return {"summary": "This document", "responses": {"200": {"description": "OK", "content": doc}}}


def _admin(action: str, summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": f"admin{action.title()}",
        "security": [{"bearerAuth": []}],
        "responses": _responses("AdminResponse", [401, 409, 503]),
    }
