"""Serving stage: logging under gunicorn (our loggers and gunicorn's in one format, text or JSON)
and the request id every log line and response carries (X-Request-ID, accepted or made)."""

from __future__ import annotations

import logging
import os
import re
import uuid

from flask import Flask, Response, g, has_request_context, request

from recsys.logs import LEVEL_ENV, TEXT_FORMAT, log_format

HEADER = "X-Request-ID"
# What a client may send as its id: printable, no spaces, bounded (it lands in logs and headers).
_VALID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class RequestIdFilter(logging.Filter):
    """Adds request_id to records logged while a request is being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def gunicorn_logconfig(access_log: str | None) -> dict:
    """gunicorn's logconfig_dict: root (our loggers) and gunicorn.error on stderr, gunicorn.access
    on stdout ("-") or a file, all in RECSYS_LOG_FORMAT; access lines only if access_log is set."""
    fmt = log_format()
    formatter = {"()": "recsys.logs.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    level = os.environ.get(LEVEL_ENV, "INFO").upper()
    stream = {"class": "logging.StreamHandler", "formatter": "line", "filters": ["request_id"]}
    access = {**stream, "stream": "ext://sys.stdout"}  # "-" (or off)
    if access_log not in (None, "-"):
        access = {**stream, "class": "logging.FileHandler", "filename": access_log}
        access.pop("stream", None)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "recsys.serving.logs.RequestIdFilter"}},
        "formatters": {"line": formatter},
        "handlers": {
            "stderr": {**stream, "stream": "ext://sys.stderr"},
            "access": access,
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO" if access_log else "CRITICAL",  # off unless RECSYS_ACCESS_LOG
                "handlers": ["access"],
                "propagate": False,
            },
        },
    }


def init_app(app: Flask) -> None:
    """Take the client's X-Request-ID (or make one) before each request; echo it on the answer."""

    @app.before_request
    def _request_id() -> None:
        given = request.headers.get(HEADER, "")
        g.request_id = given if _VALID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _echo(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        return response
