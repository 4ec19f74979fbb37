"""Shared set-up of the API end-to-end tests (imported by the test_api_* modules; no tests here):
real bundles from the sample, cheap copies under new versions, a TOML config, metric parsing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from support import build_test_bundle, dump_toml, small_sample

from recsys import bundle
from recsys.config import load_config

ADMIN_TOKEN = "e2e-admin-token"


# Every source in every segment, so each request path (known, history, profile, ...) is served
# by the sources it can use instead of whatever weights the small sample happens to learn.
FIXED_WEIGHTS = {"text": 1.0, "collab": 1.0, "popularity": 0.2}


def build_bundle(workdir: Path, promote: bool = True) -> tuple[str, Path]:
    """A real bundle: the nightly job on a small generated sample (returned with the version, for
    the tests to pick known users and items); CURRENT points at it."""
    data = small_sample(Path(workdir) / "_data")
    version = build_test_bundle(workdir, data, blend={"fixed_weights": FIXED_WEIGHTS})
    if promote and bundle.read_pointer(workdir) != version:
        bundle.set_pointer(workdir, version, reason="e2e")
    return version, data


def clone_bundle(workdir: Path, version: str, new_version: str) -> str:
    """The same files under another version (manifest.json is not among the hashed files)."""
    source = bundle.bundles_dir(workdir) / version
    target = bundle.bundles_dir(workdir) / new_version
    shutil.copytree(source, target)
    manifest = json.loads((target / bundle.MANIFEST).read_text())
    manifest["version"] = new_version
    (target / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return new_version


def write_config(path: Path, **serving) -> Path:
    """A pipeline TOML: defaults plus these [serving] values (validated as load_config would)."""
    values = {k: str(v) if isinstance(v, Path) else v for k, v in serving.items()}
    path.write_text(dump_toml(load_config(None, {"serving": values})), encoding="utf-8")
    return path


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def admin(url: str, action: str, token: str = ADMIN_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(f"{url}/admin/{action}", headers=headers, timeout=120)
