"""Admin routes: absent without RECSYS_ADMIN_TOKEN, 401 without the right bearer token."""

from __future__ import annotations

import pytest

TOKEN = "s3cret-admin-token"


@pytest.mark.parametrize("route", ["/admin/reload", "/admin/rollback"])
def test_disabled_without_a_configured_token(make_app, route):
    client = make_app(token=None).test_client()
    response = client.post(route, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "RECSYS_ADMIN_TOKEN" in response.get_json()["detail"]


@pytest.mark.parametrize("route", ["/admin/reload", "/admin/rollback"])
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"bearer{TOKEN}"],
)
def test_missing_or_wrong_token_is_401(make_app, route, header):
    client = make_app(token=TOKEN).test_client()
    headers = {"Authorization": header} if header else {}
    response = client.post(route, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_right_token_reaches_the_holder(make_app):
    client = make_app(token=TOKEN).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    reload = client.post("/admin/reload", headers=auth)  # no bundle in the work dir: refused
    assert reload.status_code == 409
    assert "pointer CURRENT is not set" in reload.get_json()["detail"]
    rollback = client.post("/admin/rollback", headers=auth)
    assert rollback.status_code == 409
    assert "nothing to roll back to" in rollback.get_json()["detail"]
