"""End-to-end HTTP edges through gunicorn (2 workers): a 413 closes the connection it says it
closes, and errors gunicorn answers itself (request line or header too long, bad Content-Length)
are JSON {error, detail} like every other error. No bundle is needed: these never reach a model."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from test_api_helpers import write_config

from recsys.serving.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MAX_BODY = 8192


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("edges")
    config = write_config(root / "serving.toml", max_body_bytes=MAX_BODY)
    with live_server(root / "var", config=config, workers=2, wait_ready=False) as server:
        yield server.url


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed by the server after the answer) for raw request bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            body += sock.recv(65536)
        sock.settimeout(3.0)  # below gunicorn's keepalive (5 s): an idle close is not a close
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
    return int(lines[0].split()[1]), headers, body, closed


def test_a_413_says_connection_close_and_closes(url):
    body = json.dumps({"profile_text": "x" * (MAX_BODY * 20)}).encode()
    request = (
        b"POST /v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status, headers, answer, closed = _raw(url, request)
    assert status == 413 and json.loads(answer)["error"] == "request_entity_too_large"
    assert headers["connection"] == "close" and closed


def test_a_pooled_client_reuses_nothing_after_a_413(url):
    session = requests.Session()
    assert session.get(url + "/healthz", timeout=30).status_code == 200
    big = {"profile_text": "x" * (MAX_BODY * 20)}
    refused = session.post(url + "/v1/recommendations", json=big, timeout=30)
    assert refused.status_code == 413 and refused.headers["Connection"] == "close"
    for _ in range(5):  # the next requests on the same pool: no spurious connection error
        assert session.get(url + "/healthz", timeout=30).status_code == 200


def test_small_bodies_keep_the_connection_alive(url):
    body = b'{"k": 3}'
    request = (
        b"POST /v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status, headers, _, closed = _raw(url, request)
    assert status == 503  # no bundle here; what matters is the connection
    assert headers["connection"] == "keep-alive" and not closed


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"POST /v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /v1/recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n", 400),
    ],
    ids=["request-line-too-long", "header-too-long", "negative-length", "bad-length", "version"],
)
def test_errors_gunicorn_answers_itself_are_json(url, request_bytes, status):
    found, headers, body, closed = _raw(url, request_bytes)
    assert found == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert set(error) == {"error", "detail"} and error["error"] and error["detail"]
    assert headers["connection"] == "close" and closed
