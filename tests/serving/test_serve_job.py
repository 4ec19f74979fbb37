"""`recsys serve`: arguments, the exact gunicorn command, clear errors before exec."""

from __future__ import annotations

import argparse
import sys

import pytest

from recsys.jobs import serve


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_runs_the_checked_in_config_and_wsgi_app():
    command = serve.gunicorn_command(_args("--host", "0.0.0.0", "--port", "9001", "--workers", "3"))
    assert command[:3] == [sys.executable, "-m", "gunicorn"]
    assert command[command.index("--config") + 1] == str(serve.GUNICORN_CONF)
    assert serve.GUNICORN_CONF.is_file()
    assert command[command.index("--bind") + 1] == "0.0.0.0:9001"
    assert command[command.index("--workers") + 1] == "3"
    assert command[-1] == "recsys.serving.wsgi:app"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "0"], "--port"),
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_arguments_fail_before_exec(tmp_path, capsys, argv, message):
    assert serve.run(_args("--workdir", str(tmp_path), *argv)) == 2
    assert message in capsys.readouterr().err


def test_bad_config_fails_before_exec(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[serving]\nmax_k = 0\n")
    from recsys.config import ConfigError

    with pytest.raises(ConfigError, match="serving.max_k"):
        serve.run(_args("--workdir", str(tmp_path), "--config", str(config)))


def test_recsys_bind_workers_threads_reach_gunicorn(tmp_path):
    """Without --host/--port/--workers/--threads, RECSYS_BIND/WORKERS/THREADS decide (12-factor):
    the real `recsys serve` listens on RECSYS_BIND."""
    import os
    import subprocess
    import time

    import requests

    from recsys.serving.live import _stop, free_port

    assert "--bind" not in serve.gunicorn_command(_args())
    port = free_port()
    env = {**os.environ, "RECSYS_BIND": f"127.0.0.1:{port}", "RECSYS_WORKERS": "1"}
    env["RECSYS_THREADS"] = "2"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    command = [sys.executable, "-m", "recsys.jobs.cli", "serve", "--workdir", str(tmp_path / "var")]
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except requests.RequestException:  # not listening yet, or the worker still loading
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, (
            tmp_path / "serve.log"
        ).read_text()
        text = (tmp_path / "serve.log").read_text()
        assert f"Listening at: http://127.0.0.1:{port}" in text
        assert "Using worker: gthread" in text and text.count("Booting worker") == 1
    finally:
        _stop(process)
        log.close()


@pytest.mark.parametrize(
    "name, value",
    [("RECSYS_WORKERS", "two"), ("RECSYS_THREADS", "0"), ("RECSYS_BIND", "8000")],
)
def test_bad_serving_variables_fail_before_exec(tmp_path, capsys, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert serve.run(_args("--workdir", str(tmp_path))) == 2
    assert name in capsys.readouterr().err
