"""/openapi.json: a valid OpenAPI 3.1 document that lists exactly the routes the app serves."""

from __future__ import annotations

import re

import pytest
import schemathesis

TOKEN = "doc-token"


def _app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        out |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def _doc_routes(doc) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


@pytest.mark.parametrize("token, bench", [(None, False), (TOKEN, True)])
def test_document_is_valid_and_matches_the_url_map(make_app, monkeypatch, token, bench):
    if bench:
        monkeypatch.setenv("RECSYS_BENCH_ROUTES", "1")
    app = make_app(token=token, max_k=50)
    doc = app.test_client().get("/openapi.json").get_json()
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    served = _app_routes(app)
    if token is None:  # admin and live write routes exist in the URL map but answer 404
        writes = {("/v1/items/{item_id}", m) for m in ("put", "patch")} | {("/v1/events", "post")}
        served = {r for r in served if not r[0].startswith("/admin/") and r not in writes}
        served = {r for r in served if not r[0].endswith(("/hide", "/unhide"))}
    assert _doc_routes(doc) == served
    params = doc["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]
    k = next(p for p in params if p["name"] == "k")["schema"]
    assert (k["minimum"], k["maximum"]) == (1, 50)  # ServingConfig.max_k, not a copy
    body = doc["components"]["schemas"]["RecommendationRequest"]
    assert body["additionalProperties"] is False
    assert set(body["properties"]) == set(app.extensions["recsys"].models.body.model_fields)


def test_admin_operations_declare_bearer_security(make_app):
    doc = make_app(token=TOKEN).test_client().get("/openapi.json").get_json()
    for route in ("/admin/reload", "/admin/rollback"):
        op = doc["paths"][route]["post"]
        assert op["security"] == [{"bearerAuth": []}]
        assert {"200", "401", "409"} <= set(op["responses"])
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for route, method in (
        ("/v1/items/{item_id}", "put"),
        ("/v1/items/{item_id}", "patch"),
        ("/v1/items/{item_id}/hide", "post"),
        ("/v1/items/{item_id}/unhide", "post"),
        ("/v1/events", "post"),
    ):
        op = doc["paths"][route][method]
        assert op["security"] == [{"bearerAuth": []}]
        assert {"200", "401"} <= set(op["responses"])
