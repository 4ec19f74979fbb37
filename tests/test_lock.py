"""Reproducible installs: the tested environment is exactly requirements.lock, and the lock
satisfies every range in pyproject.toml (so `make lock` output and the ranges never drift apart)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from support import REPO

PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)\s*$")


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _torch_spec() -> str:
    makefile = (REPO / "Makefile").read_text()
    return re.search(r"^TORCH_SPEC \?= torch==(\S+)$", makefile, re.M).group(1)


def test_installed_versions_are_the_locked_ones():
    pins = _pins(REPO / "requirements.lock")
    assert len(pins) > 50, "requirements.lock looks empty"
    wrong = {
        name: (version, metadata.version(name))
        for name, version in pins.items()
        if Version(metadata.version(name)) != Version(version)
    }
    assert not wrong, f"installed versions differ from requirements.lock (locked, found): {wrong}"
    torch = Version(metadata.version("torch"))
    assert torch.public == _torch_spec(), f"torch {torch} is not the Makefile's TORCH_SPEC"


def test_lock_satisfies_every_range_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = _pins(REPO / "requirements.lock") | {"torch": _torch_spec()}
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} (pyproject.toml) is missing from the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in the lock is outside pyproject.toml's {requirement}"
        )


def test_build_lock_pins_what_sdists_build_with():
    pins = _pins(REPO / "requirements-build.lock")
    assert {"setuptools", "wheel", "cython"} <= set(pins)
    assert Version("75") <= Version(pins["setuptools"]) < Version("77")  # lightfm-next's range
