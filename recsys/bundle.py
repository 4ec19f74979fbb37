"""Bundle stage: write, verify, publish and point to versioned model bundles (what serving reads).

Layout under a work directory:
    bundles/<version>/...          every file serving needs + manifest.json (written last)
    bundles/.staging-<version>/    being written; never read, removed when stale
    CURRENT, CHALLENGER            pointer files holding a version, replaced atomically (rename)
    promotions.jsonl               append-only history of CURRENT changes (for rollback)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when the bundle layout changes incompatibly
POINTERS = ("CURRENT", "CHALLENGER")


class BundleError(UserError):
    """A bundle that cannot be used: the message says which file and what is wrong."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file in the same directory, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def new_version(now: float | None = None) -> str:
    """Sortable, unique enough: UTC time to the second plus 4 hex of randomness."""
    stamp = datetime.fromtimestamp(now or time.time(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(2).hex()}"


def bundles_dir(workdir: Path) -> Path:
    return Path(workdir) / "bundles"


@contextmanager
def staging(workdir: Path, version: str) -> Iterator[Path]:
    """A fresh staging directory on the same filesystem; removed if the block raises."""
    root = bundles_dir(workdir)
    root.mkdir(parents=True, exist_ok=True)
    stage = root / f".staging-{version}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _bundle_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def publish(stage: Path, workdir: Path, version: str, fields: dict[str, Any]) -> Path:
    """fsync every file, write manifest.json last, then one rename makes bundles/<version>."""
    files = {}
    for path in _bundle_files(stage):
        _fsync_path(path)
        files[path.relative_to(stage).as_posix()] = sha256_file(path)
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
        "files": files,
    }
    atomic_write_text(stage / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    for sub in [stage, *(p for p in stage.rglob("*") if p.is_dir())]:
        _fsync_path(sub)
    final = bundles_dir(workdir) / version
    if final.exists():
        raise BundleError(f"bundle {version} already exists in {bundles_dir(workdir)}")
    os.rename(stage, final)
    _fsync_path(final.parent)
    return final


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle}: no {MANIFEST} (not a bundle, or not completely written)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else manifest
        raise BundleError(
            f"{path}: format_version {found!r} is not supported (expected {FORMAT_VERSION})"
        )
    return manifest


def verify(bundle: Path) -> dict[str, Any]:
    """Check the manifest and the sha256 of every file (none missing, none extra)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    expected: dict[str, str] = manifest.get("files", {})
    present = {p.relative_to(bundle).as_posix() for p in _bundle_files(bundle)}
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise BundleError(f"{bundle}: files listed in the manifest are missing: {missing[:5]}")
    if extra:
        raise BundleError(f"{bundle}: files not in the manifest: {extra[:5]}")
    for name, digest in expected.items():
        found = sha256_file(bundle / name)
        if found != digest:
            raise BundleError(
                f"{bundle / name}: sha256 mismatch (manifest {digest[:12]}…, file {found[:12]}…)"
            )
    return manifest


def read_pointer(workdir: Path, name: str = "CURRENT") -> str | None:
    path = Path(workdir) / name
    return path.read_text(encoding="utf-8").strip() or None if path.is_file() else None


def set_pointer(workdir: Path, version: str, name: str = "CURRENT", reason: str = "") -> None:
    """Atomically point CURRENT (or CHALLENGER) at an existing bundle; record the change."""
    if name not in POINTERS:
        raise ValueError(f"pointer must be one of {POINTERS}, got {name!r}")
    if not (bundles_dir(workdir) / version / MANIFEST).is_file():
        raise BundleError(f"no published bundle {version!r} in {bundles_dir(workdir)}")
    previous = read_pointer(workdir, name)
    atomic_write_text(Path(workdir) / name, version + "\n")
    if name == "CURRENT":
        record = {"at": time.time(), "version": version, "previous": previous, "reason": reason}
        with open(Path(workdir) / "promotions.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def current_bundle(workdir: Path) -> Path | None:
    version = read_pointer(workdir)
    return bundles_dir(workdir) / version if version else None


def list_bundles(workdir: Path) -> list[dict[str, Any]]:
    """Manifests of published bundles, oldest first (unreadable ones reported as errors)."""
    root = bundles_dir(workdir)
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            out.append(read_manifest(path))
        except BundleError as exc:
            out.append({"version": path.name, "error": str(exc)})
    return out


def previous_version(workdir: Path) -> str | None:
    """The bundle that was CURRENT before the present one (from the promotion history)."""
    current = read_pointer(workdir)
    history = Path(workdir) / "promotions.jsonl"
    if not history.is_file():
        return None
    records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    for record in reversed(records):
        if record["version"] == current and record.get("previous"):
            return record["previous"]
    return None


def rollback(workdir: Path, version: str | None = None) -> str:
    """Point CURRENT at `version`, or at the previous champion; verify it first."""
    target = version or previous_version(workdir)
    if target is None:
        raise BundleError(f"{workdir}: no previous bundle to roll back to")
    verify(bundles_dir(workdir) / target)
    set_pointer(workdir, target, reason="rollback")
    return target


def prune(workdir: Path, keep: int) -> list[str]:
    """Delete the oldest bundles beyond `keep`, never one a pointer names; stale staging too."""
    root = bundles_dir(workdir)
    if not root.is_dir():
        return []
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    pinned = {read_pointer(workdir, name) for name in POINTERS} | {previous_version(workdir)}
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for version in versions[: max(0, len(versions) - keep)]:
        if version not in pinned:
            shutil.rmtree(root / version)
            removed.append(version)
    return removed
