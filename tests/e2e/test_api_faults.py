"""End-to-end fault injection: broken bundles are refused over /admin/reload, the previous bundle
keeps serving, /readyz stays 200, the load-failure counter goes up (by exactly one: the watcher is
off here; that it does not retry a refused version is tested in tests/serving)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from test_api_helpers import ADMIN_TOKEN, admin, build_bundle, clone_bundle, metric, write_config

from recsys import bundle
from recsys.serving.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
FAILURES = "recsys_bundle_load_failures_total"


def _largest(directory: Path, hint: str) -> Path:
    files = [p for p in directory.rglob("*") if p.is_file() and p.name != bundle.MANIFEST]
    preferred = [p for p in files if hint in p.name.lower()] or files
    return max(preferred, key=lambda p: p.stat().st_size)


def truncate_index(path: Path) -> str:
    target = _largest(path, "faiss") if any(path.rglob("*faiss*")) else _largest(path, "index")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return "sha256 mismatch"


def flip_one_byte(path: Path) -> str:
    target = _largest(path, "")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return "sha256 mismatch"


def delete_a_file(path: Path) -> str:
    _largest(path, "parquet").unlink()
    return "missing"


def incompatible_format(path: Path) -> str:
    manifest = json.loads((path / bundle.MANIFEST).read_text())
    manifest["format_version"] = bundle.FORMAT_VERSION + 1
    (path / bundle.MANIFEST).write_text(json.dumps(manifest))
    return "format_version"


def garbage_with_matching_hash(path: Path) -> str:
    """Passes verification (the manifest is re-hashed) but cannot be loaded."""
    target = _largest(path, "npz")
    target.write_bytes(b"not a numpy archive")
    manifest = json.loads((path / bundle.MANIFEST).read_text())
    manifest["files"][target.relative_to(path).as_posix()] = bundle.sha256_file(target)
    (path / bundle.MANIFEST).write_text(json.dumps(manifest))
    return "cannot load"


FAULTS: list[Callable[[Path], str]] = [
    truncate_index,
    flip_one_byte,
    delete_a_file,
    incompatible_format,
    garbage_with_matching_hash,
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    workdir = root / "var"
    good, _ = build_bundle(workdir)
    config = write_config(root / "serving.toml", poll_seconds=0)  # only /admin/reload loads
    env = {"RECSYS_ADMIN_TOKEN": ADMIN_TOKEN}
    with live_server(workdir, config=config, workers=1, env=env) as server:
        yield {"url": server.url, "workdir": workdir, "good": good}


def _serving(world) -> str:
    ready = requests.get(world["url"] + "/readyz", timeout=30)
    assert ready.status_code == 200
    answer = requests.get(world["url"] + "/v1/users/someone/recommendations", timeout=30)
    assert answer.status_code == 200
    assert ready.json()["variants"]["CURRENT"] == answer.json()["bundle"]
    return answer.json()["bundle"]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_broken_bundle_is_refused_and_the_old_one_keeps_serving(world, fault):
    workdir, url, good = world["workdir"], world["url"], world["good"]
    broken = clone_bundle(workdir, good, f"{good}-{fault.__name__}")
    expected = fault(bundle.bundles_dir(workdir) / broken)
    before = metric(url, FAILURES, variant="CURRENT")
    bundle.set_pointer(workdir, broken, reason="fault injection")
    try:
        response = admin(url, "reload")
        assert response.status_code == 409
        assert response.json()["error"] == "bundle_refused"
        assert expected in response.json()["detail"]
        assert _serving(world) == good
        assert metric(url, FAILURES, variant="CURRENT") == before + 1
    finally:
        bundle.set_pointer(workdir, good, reason="restore")
    assert admin(url, "reload").status_code == 200
    assert _serving(world) == good
