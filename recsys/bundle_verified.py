"""Bundle stage: sha256 verification once per host per bundle — the first process to load a bundle
hashes it and records a marker; later loads on that host check only the files' identity (reads a
bundle; writes bundles/.verified/<version>@<host>.json and .lock beside it).

Four API workers starting on one bundle would otherwise each hash every file (gigabytes at 10⁶
items). The marker holds the sha256 of manifest.json and each file's (size, mtime, ctime, inode,
device) as they were when hashing began; any write, rename, `touch -d` or added/removed file
changes that signature (ctime cannot be set from user space), so the bundle is hashed again and a
tampered file is refused as before. Like git's "racy clean" rule, a marker is written only when
every file's ctime is older than the hashing by RACY_SECONDS (the timestamp granularity of the
filesystem), so a change within the same clock tick cannot go unseen. Whoever can write the marker
can also rewrite the manifest and files, so it trusts no one new. Where the marker directory cannot
be written (a read-only mount), every load hashes, as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from recsys.atomic import atomic_write_bytes
from recsys.bundle import read_manifest, verify
from recsys.bundle_files import MANIFEST, bundle_files

log = logging.getLogger("recsys.bundle")

VERIFIED_DIR = ".verified"  # under bundles/: a dot name, never listed as a version
RACY_SECONDS = 1.0


def marker_path(bundle: Path) -> Path:
    """bundles/.verified/<version>@<host>.json: one marker per bundle version per host."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return Path(bundle).parent / VERIFIED_DIR / f"{Path(bundle).name}@{host}.json"


def _signature(bundle: Path) -> dict[str, Any]:
    """What identifies the bundle's bytes without reading them: the manifest's sha256 and each
    file's (size, mtime_ns, ctime_ns, inode, device)."""
    files = {}
    for path in [*bundle_files(bundle), bundle / MANIFEST]:
        st = path.stat()
        rel = path.relative_to(bundle).as_posix()
        files[rel] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    digest = hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()
    return {"manifest_sha256": digest, "files": files}


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or unreadable: hash again
    return marker if isinstance(marker, dict) else None


def _settled(signature: dict[str, Any], started_ns: int) -> bool:
    """Every file's ctime older than the hashing by RACY_SECONDS: a later change shows."""
    limit = started_ns - int(RACY_SECONDS * 1e9)
    return all(stat[2] < limit for stat in signature["files"].values())


def verify_once(bundle: Path) -> tuple[dict[str, Any], bool]:
    """(manifest, hashed): verify() unless this host has verified these very files before.
    Concurrent callers on one host wait on a lock, so one hashes and the others read its marker.
    Raises BundleError like verify()."""
    bundle = Path(bundle)
    if bundle.is_symlink() or not (bundle / MANIFEST).is_file():
        return verify(bundle), True  # refused, with verify()'s message
    marker = marker_path(bundle)
    try:
        marker.parent.mkdir(exist_ok=True)
        lock = open(marker.with_suffix(".lock"), "a")  # noqa: SIM115 (held across the block)
    except OSError as exc:
        log.warning("bundle %s: cannot record verification (%s); hashing", bundle.name, exc)
        return verify(bundle), True
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        signature = _signature(bundle)
        recorded = _read_marker(marker)
        if recorded is not None and recorded.get("signature") == signature:
            log.info("bundle %s: sha256 verified earlier on this host (%s)", bundle.name, marker)
            return read_manifest(bundle), False
        started = time.time_ns()
        manifest = verify(bundle)
        log.info("bundle %s: sha256 of %d files verified", bundle.name, len(signature["files"]))
        if _signature(bundle) == signature and _settled(signature, started):
            record = {"version": bundle.name, "host": socket.gethostname(), "pid": os.getpid()}
            record |= {"verified_at_ns": started, "signature": signature}
            try:
                atomic_write_bytes(marker, json.dumps(record, indent=1).encode("utf-8"))
            except OSError as exc:
                log.warning("bundle %s: cannot write %s (%s)", bundle.name, marker, exc)
        return manifest, True


def marker_files(bundles_root: Path, version: str) -> list[Path]:
    """Every host's marker and lock of a version (deleted with it: retention, `recsys gc`)."""
    return sorted((Path(bundles_root) / VERIFIED_DIR).glob(f"{version}@*"))


def remove_markers(bundles_root: Path, version: str) -> None:
    for path in marker_files(bundles_root, version):
        path.unlink(missing_ok=True)
