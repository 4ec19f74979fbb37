"""Bundle stage: write, verify, publish and point to versioned model bundles (what serving reads).

Layout under a work directory:
    bundles/<version>/...          every file serving needs + manifest.json (written last)
    bundles/.staging-<version>/    being written; never read, removed when stale
    CURRENT, CHALLENGER            pointer files holding a version, replaced atomically (rename)
    promotions.jsonl               append-only history of CURRENT changes (recsys.promotions)
    pointers.lock                  held while a pointer changes (rollback reads, then writes)

A version is a directory name matching VERSION_PATTERN everywhere (pointers, rollback, variants):
never a path, so one work directory cannot be made to serve another's bundle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys import promotions
from recsys.bundle_files import (
    MANIFEST,
    BundleError,
    bundle_files,
    empty_directories,
    safe_name,
    sha256_file,
)
from recsys.promotions import pointer_lock

FORMAT_VERSION = 1  # bump when the bundle layout changes incompatibly
POINTERS = ("CURRENT", "CHALLENGER")
# Letters, digits and '_.:+-', starting with a letter or digit: never '..', never a '/'.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)


def is_version(name: object) -> bool:
    return isinstance(name, str) and _VERSION.match(name) is not None


def check_version(name: str, where: str = "version") -> str:
    """`name` if it is a bundle version; BundleError saying what a version looks like if not."""
    if not is_version(name):
        raise BundleError(
            f"{where}: expected a bundle version (letters, digits and '_.:+-', starting with a "
            f"letter or digit; not a path), found {str(name)[:80]!r}"
        )
    return name


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


def publish(stage: Path, workdir: Path, version: str, fields: dict[str, Any]) -> Path:
    """fsync every file, write manifest.json last, then one rename makes bundles/<version>."""
    files = {}
    for path in bundle_files(stage):
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
    """Check the manifest and the sha256 of every file (none missing, none extra). A bundle holds
    regular files only: a symlink, FIFO, device or stray directory anywhere in it is refused."""
    bundle = Path(bundle)
    if bundle.is_symlink():
        raise BundleError(f"{bundle}: is a symlink; a bundle is a directory of regular files")
    files = bundle_files(bundle)  # before reading anything: a FIFO manifest is never opened
    manifest = read_manifest(bundle)
    expected: dict[str, str] = manifest.get("files", {})
    if not isinstance(expected, dict) or any(not safe_name(n) for n in expected):
        raise BundleError(f"{bundle / MANIFEST}: 'files' must map relative paths to sha256")
    present = {p.relative_to(bundle).as_posix() for p in files}
    empty = empty_directories(bundle, files)
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise BundleError(f"{bundle}: files listed in the manifest are missing: {missing[:5]}")
    if extra:
        raise BundleError(f"{bundle}: files not in the manifest: {extra[:5]}")
    if empty:
        raise BundleError(f"{bundle}: directories not in the manifest: {empty[:5]}")
    for name, digest in expected.items():
        found = sha256_file(bundle / name)
        if found != digest:
            raise BundleError(
                f"{bundle / name}: sha256 mismatch (manifest {digest[:12]}…, file {found[:12]}…)"
            )
    return manifest


def read_pointer(workdir: Path, name: str = "CURRENT") -> str | None:
    """The version a pointer names; None when the file is absent or empty. BundleError (one line,
    naming the file and how to repair it) when it holds anything but one version."""
    path = Path(workdir) / name
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = None
    if text == "":
        return None
    if text is None or not is_version(text):
        raise BundleError(
            f"{path}: expected one bundle version, found {raw[:40]!r}; repair it with "
            f"`recsys bundles rollback VERSION`"
            + ("" if name == "CURRENT" else f" (CURRENT) or by rewriting {name}")
        )
    return text


def bundle_path(workdir: Path, version: str) -> Path:
    """bundles/<version> of a work directory; BundleError if `version` is not a version."""
    return bundles_dir(workdir) / check_version(version)


def _write_pointer(workdir: Path, version: str, name: str, reason: str) -> None:
    if not (bundle_path(workdir, version) / MANIFEST).is_file():
        raise BundleError(f"no published bundle {version!r} in {bundles_dir(workdir)}")
    try:
        previous = read_pointer(workdir, name)
    except BundleError:  # an unreadable pointer is being repaired: nothing to record as previous
        previous = None
    atomic_write_text(Path(workdir) / name, version + "\n")
    if name == "CURRENT":
        promotions.append(workdir, version, previous, reason)


def set_pointer(workdir: Path, version: str, name: str = "CURRENT", reason: str = "") -> None:
    """Atomically point CURRENT (or CHALLENGER) at an existing bundle; record the change."""
    if name not in POINTERS:
        raise ValueError(f"pointer must be one of {POINTERS}, got {name!r}")
    with pointer_lock(workdir):
        _write_pointer(workdir, version, name, reason)


def current_bundle(workdir: Path) -> Path | None:
    version = read_pointer(workdir)
    return bundle_path(workdir, version) if version else None


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


def champions(workdir: Path) -> list[str]:
    """The champion stack, oldest first, its top what CURRENT names (see recsys.promotions)."""
    return promotions.champions(promotions.read_records(workdir), read_pointer(workdir))


def _published(workdir: Path):
    return lambda version: (
        is_version(version) and (bundle_path(workdir, version) / MANIFEST).is_file()
    )


def previous_version(workdir: Path) -> str | None:
    """The champion before the present one that is still published (what rollback goes to)."""
    current = read_pointer(workdir)
    stack = promotions.champions(promotions.read_records(workdir), current)
    return promotions.rollback_target(stack, current, _published(workdir))[0]


def rollback(workdir: Path, version: str | None = None) -> str:
    """Point CURRENT at `version`, or at the champion before the present one; verify it first.

    Walks back through the champions (A -> B -> C -> D: C, then B, then A), skipping pruned ones.
    A rollback that would change nothing is refused (BundleError), never reported as done."""
    with pointer_lock(workdir):
        if version is not None:
            check_version(version, "rollback")
            try:
                current = read_pointer(workdir)
            except BundleError:
                current = None  # `rollback VERSION` is how an unreadable CURRENT is repaired
            target = version
        else:
            current = read_pointer(workdir)
            stack = promotions.champions(promotions.read_records(workdir), current)
            target, skipped = promotions.rollback_target(stack, current, _published(workdir))
            if target is None:
                gone = f" (earlier ones were pruned: {', '.join(skipped)})" if skipped else ""
                raise BundleError(
                    f"{workdir}: nothing to roll back to: no earlier champion than "
                    f"{current or 'the present one'} is published{gone}"
                )
        if target == current:
            raise BundleError(f"{workdir}: CURRENT already names {target}; nothing rolled back")
        verify(bundle_path(workdir, target))
        _write_pointer(workdir, target, "CURRENT", promotions.ROLLBACK)
    return target
