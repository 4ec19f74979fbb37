"""Packaging: an API-only host (requirements-serve.lock, `pip install 'recsys-engine[cpu]'`) serves.

`recsys serve` runs for real (gunicorn, a worker, a published bundle) in an interpreter where every
package that is in requirements.lock but not in requirements-serve.lock cannot be imported, plus
sentence-transformers (installed there only because the packaged MiniLM declares it). The bundle is
built beforehand in this process, with the full install, by the real nightly job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import requests
from packaging.utils import canonicalize_name
from support import REPO, build_test_bundle

from recsys.serving.live import free_port

SITE = Path(__file__).parent / "api_only_site"  # its sitecustomize.py blocks the modules
PIN = re.compile(r"^([A-Za-z0-9._-]+)==")
# Never imported by serving, whatever the install holds.
ALSO_BLOCKED = {"sentence_transformers"}
NIGHTLY_ONLY = {"mlflow", "lightfm", "implicit", "onnx", "onnxruntime", "matplotlib"}


def _locked(name: str) -> set[str]:
    lines = (REPO / name).read_text().splitlines()
    return {canonicalize_name(m.group(1)) for m in map(PIN.match, lines) if m}


def blocked_modules() -> set[str]:
    """Top-level modules whose every installed provider is locked for the full install only."""
    only_full = _locked("requirements.lock") - _locked("requirements-serve.lock")
    blocked = set(ALSO_BLOCKED)
    for module, dists in metadata.packages_distributions().items():
        providers = {canonicalize_name(d) for d in dists}
        if providers <= only_full:
            blocked.add(module)
    return blocked


def _env(workdir: Path, blocked: set[str]) -> dict[str, str]:
    env = dict(os.environ, RECSYS_WORKDIR=str(workdir), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    env["RECSYS_BLOCKED_MODULES"] = ",".join(sorted(blocked))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir.parent / "prometheus")
    env.pop("RECSYS_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("api-only") / "var"
    # Fixed weights: this module checks the install, not the blend. Learned on the tiny random
    # BERT's sample, the published weights may give text nothing, and a profile-only user would
    # then be answered by popularity instead of the text path checked below.
    weights = {"text": 0.4, "collab": 0.3, "popularity": 0.1, "neighbors": 0.2}
    build_test_bundle(workdir, blend={"fixed_weights": weights})
    return workdir


def test_the_blocked_set_is_the_nightly_and_the_blocker_works(published):
    blocked = blocked_modules()
    assert NIGHTLY_ONLY <= blocked, NIGHTLY_ONLY - blocked
    assert not {"torch", "faiss", "flask", "gunicorn", "transformers", "polars"} & blocked
    # Prints the names that behave as not installed: no spec, and the import fails.
    probe = (
        "import importlib, importlib.util, sys\n"
        "for m in sys.argv[1:]:\n"
        "    if importlib.util.find_spec(m) is None:\n"
        "        try:\n"
        "            importlib.import_module(m)\n"
        "        except ModuleNotFoundError:\n"
        "            print(m)\n"
    )
    names = sorted(NIGHTLY_ONLY | ALSO_BLOCKED) + ["faiss"]
    out = subprocess.run(
        [sys.executable, "-c", probe, *names],
        env=_env(published, blocked),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out == sorted(NIGHTLY_ONLY | ALSO_BLOCKED), out  # faiss imports; the others do not


def test_admin_rollback_leaves_the_registry_alone_without_mlflow(published, tmp_path):
    """What POST /admin/rollback runs after moving CURRENT, on an install without mlflow: no
    import error, a report that says why the alias was not moved (and a logged warning)."""
    probe = (
        "import json, logging, sys\n"
        "from pathlib import Path\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import recsys.serving.app\n"
        "from recsys.serving.registry import follow_rollback\n"
        "print(json.dumps(follow_rollback(Path(sys.argv[1]), None, 'v2', 'rollback')))\n"
    )
    env = _env(published, blocked_modules())
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"  # configured, yet absent
    done = subprocess.run(
        [sys.executable, "-c", probe, str(published)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["moved"] is False and report["version"] is None
    assert report["detail"] == "mlflow is not installed here (an API-only install)"
    assert "MLflow alias" in done.stderr and "not moved" in done.stderr
    assert "blocked: not part of an API-only install" not in done.stderr


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"recsys serve exited {process.returncode}:\n{log.read_text()}"
        )
        assert "refused bundle" not in log.read_text(), log.read_text()[-4000:]
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # a worker still loading
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
@pytest.mark.integration
def test_recsys_serve_loads_and_ranks_without_the_nightly_packages(published, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    recsys = Path(sys.executable).parent / "recsys"
    command = [str(recsys), "serve", "--port", str(port), "--workers", "1", "--threads", "2"]
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command, env=_env(published, blocked_modules()), stdout=sink, stderr=sink
        )
    try:
        _wait_ready(url, process, log)
        user = json.loads(next(published.glob("bundles/*/users.json")).read_text())[0]
        known = requests.get(f"{url}/v1/users/{user}/recommendations?k=3&explain=true", timeout=30)
        assert known.status_code == 200 and len(known.json()["items"]) == 3, known.text
        # A profile-text request runs the user tower: the BERT backbone, torch, the tokenizer.
        body = {"profile_text": "a quiet story about the sea", "k": 3}
        cold = requests.post(f"{url}/v1/recommendations", json=body, timeout=60)
        assert cold.status_code == 200 and cold.json()["path"] == "profile", cold.text
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "blocked: not part of an API-only install" not in log.read_text()
