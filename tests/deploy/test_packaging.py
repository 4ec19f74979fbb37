"""Packaging: the wheel `pip` builds from this tree is the distribution recsys-engine with the
LICENSE, every source module under the name pyproject.toml installs it as, only the allowed
top-level packages, and a `recsys` command that points at a real function."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser

import pytest
from support import REPO

SOURCES = ("recsys", "jobs", "serving")
# What may be installed at the top of site-packages. jobs and serving are generic names, to be
# installed as recsys.jobs / recsys.serving (see pyproject.toml [tool.setuptools.package-dir]).
ALLOWED_TOP_LEVEL = {"recsys"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("recsys_engine-*.whl")
    return zipfile.ZipFile(path)


def installed_name(relative: str) -> str:
    """Where a source file lands in the wheel, through [tool.setuptools.package-dir]."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in tool.get("package-dir", {}).items():
        if relative.startswith(folder + "/"):
            return package.replace(".", "/") + relative.removeprefix(folder)
    return relative


def dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    # LICENSE: dist-info/LICENSE or, from setuptools 77 on, dist-info/licenses/LICENSE.
    (path,) = [n for n in wheel.namelist() if ".dist-info/" in n and n.endswith(f"/{name}")]
    return wheel.read(path).decode()


def test_wheel_is_recsys_engine_with_its_license(wheel):
    meta = Parser().parsestr(dist_info(wheel, "METADATA"))
    assert meta["Name"] == "recsys-engine"
    assert meta["License"] == "Apache-2.0"
    assert "Apache License" in dist_info(wheel, "LICENSE")
    assert set(meta.get_all("Provides-Extra")) >= {"nightly", "cpu", "gpu", "dev"}


def test_every_source_module_is_in_the_wheel_and_nothing_else_at_the_top(wheel):
    names = set(wheel.namelist())
    sources = [
        str(path.relative_to(REPO))
        for folder in SOURCES
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    missing = sorted(s for s in sources if installed_name(s) not in names)
    assert not missing, f"not in the wheel: {missing}"
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top <= ALLOWED_TOP_LEVEL, top - ALLOWED_TOP_LEVEL


def test_recsys_command_points_at_a_function(wheel):
    line = next(
        x for x in dist_info(wheel, "entry_points.txt").splitlines() if x.startswith("recsys")
    )
    module, _, attribute = line.split("=", 1)[1].strip().partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
