"""Serving: the bearer-token check of the admin and live write routes (one place for both)."""

from __future__ import annotations

import hmac

from flask import request

from recsys.serving.errors import ApiError


def require_bearer(token: str | None, disabled: str, expected: str, realm: str) -> None:
    """No token configured: the routes do not exist (404, `disabled` says why). Otherwise the
    request must carry `Authorization: Bearer <token>` (401 naming `expected` if not)."""
    if token is None:
        raise ApiError(404, "not_found", disabled)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        raise ApiError(
            401,
            "unauthorized",
            f"expected header 'Authorization: Bearer <{expected}>'",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
        )
