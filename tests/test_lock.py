"""Reproducible installs: the environment the tests run in is exactly requirements.lock, the locks
satisfy every range in pyproject.toml for the extras they were made with (so `make lock` output and
the ranges never drift apart), the API-only lock is the same pins without the nightly's packages,
and the two FAISS extras are alternatives."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
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


def _makefile_value(name: str) -> str:
    makefile = (REPO / "Makefile").read_text()
    return re.search(rf"^{name}\s*[:?]?=\s*(.*)$", makefile, re.M).group(1).strip()


def _torch_spec() -> str:
    return _makefile_value("TORCH_SPEC").removeprefix("torch==")


def _extras(variable: str) -> list[str]:
    """The extras a Makefile variable passes to `uv pip compile` (`--extra NAME ...`)."""
    return re.findall(r"--extra (\S+)", _makefile_value(variable))


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements(extras: list[str]) -> list[Requirement]:
    project = _project()["project"]
    lines = project["dependencies"] + [
        line for extra in extras for line in project["optional-dependencies"][extra]
    ]
    return [Requirement(line) for line in lines]


def _assert_pins_satisfy(pins: dict[str, str], requirements: list[Requirement], lock: str) -> None:
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} (pyproject.toml) is missing from {lock}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in {lock} is outside pyproject.toml's {requirement}"
        )


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
    extras = _extras("LOCK_EXTRAS")
    assert {"nightly", "cpu", "dev"} <= set(extras), f"make run/test need these extras: {extras}"
    pins = _pins(REPO / "requirements.lock") | {"torch": _torch_spec()}
    _assert_pins_satisfy(pins, _requirements(extras), "requirements.lock")


NIGHTLY_ONLY = {
    "mlflow",
    "lightfm-next",
    "implicit",
    "onnx",
    "onnxruntime",
    "matplotlib",
    "pyarrow",
}
DEV_ONLY = {"pytest", "hypothesis", "ruff", "ranx", "schemathesis", "kubernetes-validate"}


@pytest.mark.parametrize(
    "lock, variable, absent",
    [
        # Production hosts and images: the nightly and the API, no dev tools.
        ("requirements-nightly.lock", "NIGHTLY_EXTRAS", DEV_ONLY),
        # An API-only host: neither the training, tracking and plotting packages nor dev tools.
        ("requirements-serve.lock", "SERVE_EXTRAS", DEV_ONLY | NIGHTLY_ONLY),
    ],
)
def test_production_locks_are_the_same_pins_with_less(lock, variable, absent):
    """A production host installs the very versions the tests ran with, minus what it never runs."""
    pins = _pins(REPO / lock)
    full = _pins(REPO / "requirements.lock")
    _assert_pins_satisfy(pins | {"torch": _torch_spec()}, _requirements(_extras(variable)), lock)
    differ = {n: (v, full.get(n)) for n, v in pins.items() if full.get(n) != v}
    assert not differ, f"{lock} pins differ from requirements.lock: {differ}"
    assert absent <= set(full) and not absent & set(pins), f"{lock} has {absent & set(pins)}"


def test_faiss_extras_are_alternatives():
    """faiss-cpu and faiss-gpu-cu12 install the same `faiss` module: one extra each, declared as
    conflicting, and exactly one of them locked and installed."""
    project = _project()
    extras = project["project"]["optional-dependencies"]
    wheels = {"cpu": "faiss-cpu", "gpu": "faiss-gpu-cu12"}
    for extra, wheel in wheels.items():
        assert [Requirement(r).name for r in extras[extra]] == [wheel]
    faiss_anywhere = [r for r in project["project"]["dependencies"] if "faiss" in r]
    assert not faiss_anywhere, f"FAISS in the base dependencies: {faiss_anywhere}"
    assert project["tool"]["uv"]["conflicts"] == [[{"extra": "cpu"}, {"extra": "gpu"}]]
    locked = {n for n in _pins(REPO / "requirements.lock") if n.startswith("faiss")}
    assert locked == {"faiss-cpu"}
    installed = {
        canonicalize_name(d.metadata["Name"])
        for d in metadata.distributions()
        if canonicalize_name(d.metadata["Name"]).startswith("faiss")
    }
    assert installed == {"faiss-cpu"}, f"FAISS wheels installed over each other: {installed}"


def test_build_lock_pins_what_sdists_build_with():
    pins = _pins(REPO / "requirements-build.lock")
    assert {"setuptools", "wheel", "cython"} <= set(pins)
    assert Version("75") <= Version(pins["setuptools"]) < Version("77")  # lightfm-next's range
