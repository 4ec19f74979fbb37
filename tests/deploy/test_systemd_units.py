"""Deployment: deploy/systemd/ passes `systemd-analyze verify` (systemd's own parser and checker:
unknown keys, bad values, a timer without a schedule, an ExecStart that is not executable) with no
message at all, and agrees with the code: the `recsys` commands and options exist, the API's port
is serving/gunicorn_conf.py's, the timer starts the nightly unit, both units use one work directory
and one config."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from code_facts import cli_error, gunicorn_default_bind, option, unknown_env_names
from support import REPO

DIR = REPO / "deploy" / "systemd"
UNITS = sorted(p for p in DIR.iterdir() if p.suffix in (".service", ".timer"))
INSTALLED_BIN = "/opt/recsys/.venv/bin/"  # where the README installs the project


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value it is given (Environment= and friends repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (DIR / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def value(name: str, section: str, key: str) -> str:
    (only,) = unit(name)[section][key]
    return only


def environment(name: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in unit(name)["Service"]["Environment"])


def exec_start(name: str) -> list[str]:
    argv = shlex.split(value(name, "Service", "ExecStart"))
    assert argv[0] == INSTALLED_BIN + "recsys", argv[0]
    return argv[1:]


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: run tests/system_deps.sh (Debian's systemd)")
    return path


def verify(systemd_analyze: str, directory: Path, texts: dict[str, str]) -> tuple[int, str]:
    """systemd-analyze verify on the unit texts, written with ExecStart pointing at this
    environment's `recsys` (verify checks that the command exists and is executable)."""
    here = str(Path(sys.executable).parent) + "/"
    for name, text in texts.items():
        (directory / name).write_text(text.replace(INSTALLED_BIN, here))
    done = subprocess.run(
        [systemd_analyze, "verify", *(str(directory / name) for name in texts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def shipped() -> dict[str, str]:
    return {path.name: path.read_text() for path in UNITS}


def test_units_verify_without_a_single_message(systemd_analyze, tmp_path):
    assert {"recsys-api.service", "recsys-nightly.service", "recsys-nightly.timer"} <= set(
        shipped()
    )
    code, output = verify(systemd_analyze, tmp_path, shipped())
    assert (code, output) == (0, ""), output


@pytest.mark.parametrize(
    "name, good, bad",
    [
        ("recsys-nightly.timer", "OnCalendar=*-*-* 02:00:00", "OnCalendar=every night"),
        ("recsys-nightly.timer", "Persistent=true", "Persistant=true"),
        ("recsys-nightly.service", "Type=oneshot", "Type=once"),
        ("recsys-api.service", "bin/recsys serve", "bin/recsys-api serve"),
    ],
)
def test_verify_refuses_a_broken_unit(systemd_analyze, tmp_path, name, good, bad):
    texts = shipped()
    assert good in texts[name]
    texts[name] = texts[name].replace(good, bad)
    code, output = verify(systemd_analyze, tmp_path, texts)
    assert code != 0 or output, f"{bad!r} was accepted"


def test_api_unit_serves_on_gunicorn_conf_port_with_the_admin_token_from_a_file():
    argv = exec_start("recsys-api.service")
    assert argv[0] == "serve" and cli_error(argv) is None, cli_error(argv)
    assert (option(argv, "--host"), int(option(argv, "--port"))) == gunicorn_default_bind()
    env_file = value("recsys-api.service", "Service", "EnvironmentFile")
    assert env_file.startswith("-/etc/recsys/")  # optional: without a token, admin routes are off
    assert "RECSYS_ADMIN_TOKEN" in (DIR / "recsys-api.service").read_text()
    assert value("recsys-api.service", "Install", "WantedBy") == "multi-user.target"


def test_nightly_is_a_oneshot_started_by_the_timer_and_tolerates_a_held_lock():
    argv = exec_start("recsys-nightly.service")
    assert argv[0] == "nightly" and cli_error(argv) is None, cli_error(argv)
    service = "recsys-nightly.service"
    assert value(service, "Service", "Type") == "oneshot"  # systemd never runs two at once
    assert "Install" not in unit(service)  # started by the timer, not at boot
    assert value(service, "Service", "SuccessExitStatus") == "75"  # lock held by a manual run
    assert value("recsys-nightly.timer", "Timer", "Unit") == service
    assert value("recsys-nightly.timer", "Timer", "Persistent") == "true"  # missed night: at boot


def test_units_share_one_work_directory_and_config():
    api, nightly = environment("recsys-api.service"), environment("recsys-nightly.service")
    assert api["RECSYS_WORKDIR"] == nightly["RECSYS_WORKDIR"]
    state = "/var/lib/" + value("recsys-api.service", "Service", "StateDirectory")
    assert Path(api["RECSYS_WORKDIR"]).is_relative_to(state)  # writable under ProtectSystem
    configs = {
        option(exec_start(n), "--config") for n in ("recsys-api.service", "recsys-nightly.service")
    }
    assert len(configs) == 1, configs
    names = {n for env in (api, nightly) for n in env if n.startswith("RECSYS_")}
    assert not unknown_env_names(names), unknown_env_names(names)
