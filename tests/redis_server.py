"""A real redis-server process for the tests of the Redis live store (recsys.live_redis)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from recsys.serving.live import free_port


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )


@contextmanager
def start_redis(directory: Path) -> Iterator[str]:
    """Start redis-server on a free loopback port (AOF on, fsync always: as durable as the SQLite
    store); yield its URL once it answers PING; stop it (SIGTERM, then SIGKILL)."""
    binary = redis_binary()
    if binary is None:
        pytest.skip(
            "redis-server is not installed: the Redis live store is tested against a real server "
            "(Debian package redis-server; tests/system_deps.sh installs it)"
        )
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    log = open(directory / "redis.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(url, process, directory)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait(url: str, process: subprocess.Popen, directory: Path, timeout: float = 20.0) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((directory / "redis.log").read_text(errors="replace")[-2000:])
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise TimeoutError(f"redis-server at {url} did not answer PING in {timeout:.0f} s")
