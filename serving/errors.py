"""Serving stage: every error leaves the API as JSON {error, detail} with the right status code."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("recsys.serving")


class ApiError(Exception):
    """An error the client should see as it is: status, short code, human detail."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, error: str, detail: str) -> Response:
    response = jsonify(error=error, detail=detail)
    response.status_code = status
    return response


def describe_validation(exc: ValidationError, where: str) -> str:
    """'query.k: Input should be less than or equal to 100 (found 500)' for each problem."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        found = err.get("input")
        shown = repr(found) if not isinstance(found, dict) else "an object"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{where}.{loc}: {err['msg']} (found {shown})")
    return "; ".join(parts)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def init_app(app: Flask) -> None:
    """Register JSON handlers for our errors, every werkzeug HTTPException and anything else."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.error, exc.detail)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        detail = exc.description or exc.name
        if exc.code == 413:
            detail = f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        response = error_response(exc.code or 500, _snake(exc.name), detail)
        for name, value in exc.get_headers():  # keeps Allow on 405, WWW-Authenticate, ...
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: see the server log")
