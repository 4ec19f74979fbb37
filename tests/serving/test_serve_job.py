"""`recsys serve`: arguments, the exact gunicorn command, clear errors before exec."""

from __future__ import annotations

import argparse
import sys

import pytest

from jobs import serve


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
    assert command[-1] == "serving.wsgi:app"


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
