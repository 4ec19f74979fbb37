"""`recsys config show | validate | schema` as a user runs them: file, environment, errors."""

import json
import os
import subprocess
import sys

from support import REPO


def _cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", "config", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
    )


def test_show_says_where_each_value_came_from(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collab]\nfactors = 16\nepochs = 5\n")
    proc = _cli("show", "--json", "--config", str(path), RECSYS_COLLAB__FACTORS="48")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["config"]["collab"]["factors"] == 48 and shown["config"]["collab"]["epochs"] == 5
    assert shown["origins"]["collab.factors"] == "environment"
    assert shown["origins"]["collab.epochs"] == f"file {path}"
    text = _cli("show", "--config", str(path), RECSYS_COLLAB__FACTORS="48").stdout
    assert "factors = 48  # from environment" in text and "# Latent factors" in text


def test_recsys_config_variable_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[eval]\nk = 20\n")
    proc = _cli("show", "--json", RECSYS_CONFIG=str(path))
    assert json.loads(proc.stdout)["config"]["eval"]["k"] == 20


def test_validate_exit_codes(tmp_path):
    good = _cli("validate", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text("[collab]\nfactors = -1\n")
    proc = _cli("validate", "--config", str(bad))
    assert proc.returncode == 1
    assert "collab.factors" in proc.stderr and "Traceback" not in proc.stderr
    typo = _cli("validate", RECSYS_COLLAB__FACTORZ="3")
    assert typo.returncode == 1 and "RECSYS_COLLAB__FACTORZ" in typo.stderr


def test_schema_is_json_with_every_section():
    proc = _cli("schema")
    assert proc.returncode == 0
    document = json.loads(proc.stdout)
    assert document["$schema"].endswith("2020-12/schema")
    assert {"collab", "encoder", "serving"} <= set(document["properties"])
