"""Serving stage: errors gunicorn answers itself, before the app sees a request (request line or
header too long, malformed Content-Length, ...), as the API's JSON {error, detail} instead of
gunicorn's HTML page. Installed in each worker by serving/gunicorn_conf.py (post_fork)."""

from __future__ import annotations

import json
import re

from gunicorn import util


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature and framing (Connection: close), JSON body."""
    error = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "bad_request"
    body = json.dumps({"error": error, "detail": mesg or reason}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Replace gunicorn's HTML error writer in this (worker) process; its callers look it up on
    the module at each error, so the replacement serves every later one."""
    util.write_error = write_json_error
