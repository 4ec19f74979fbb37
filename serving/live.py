"""Serving stage: run the API under gunicorn as a child process (the `recsys serve` command line, a
free loopback port, wait until /readyz) — used by the end-to-end tests and the load benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn_conf.py"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # gunicorn_conf.py's bind when RECSYS_BIND is unset


def gunicorn_command(
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> list[str]:
    """gunicorn, the checked-in config, recsys.serving.wsgi:app: exactly what `recsys serve` runs.
    What is None is left to gunicorn_conf.py (RECSYS_BIND, RECSYS_WORKERS, RECSYS_THREADS,
    defaults)."""
    command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF)]
    if host is not None or port is not None:
        command += ["--bind", f"{host or DEFAULT_HOST}:{port or DEFAULT_PORT}"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    return [*command, "recsys.serving.wsgi:app"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def live_server(
    workdir: str | Path,
    *,
    config: str | Path | None = None,
    workers: int = 1,
    threads: int = 4,
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 180.0,
) -> Iterator[LiveServer]:
    """Start gunicorn on a free 127.0.0.1 port; yield once /healthz (and /readyz) answer 200."""
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="recsys-live-"))  # log + metrics files, removed below
    child_env = dict(os.environ, RECSYS_WORKDIR=str(workdir), **(env or {}))
    child_env["PROMETHEUS_MULTIPROC_DIR"] = str(scratch / "prometheus")
    if config is not None:
        child_env["RECSYS_CONFIG"] = str(config)
    log_path = scratch / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            gunicorn_command("127.0.0.1", port, workers, threads),
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        if wait_ready:  # every worker serving, not just the first to answer
            _wait(server, "/readyz", timeout, workers)
        else:
            _wait(server, "/healthz", timeout)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _wait(server: LiveServer, path: str, timeout: float, workers: int = 0) -> None:
    """Until `path` answers 200 (and, for /readyz, all `workers` workers serve a bundle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited ({server.process.returncode}):\n{server.log_tail()}"
            )
        try:
            response = requests.get(server.url + path, timeout=2)
            serving = response.json().get("workers", {}) if response.status_code == 200 else {}
            if response.status_code == 200 and sum(map(bool, serving.values())) >= workers:
                return
        except (requests.RequestException, ValueError):  # not listening yet, or busy loading
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{server.url}{path} not 200 after {timeout:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (graceful), then SIGINT (quick shutdown), then SIGKILL to the whole group."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGINT, 5)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
