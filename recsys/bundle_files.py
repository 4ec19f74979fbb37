"""Bundle stage: what a bundle directory may hold — regular files and the directories holding
them, nothing else — and each file's sha256, read through the descriptor that was checked (reads a
bundle directory; writes nothing)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from recsys.errors import UserError

MANIFEST = "manifest.json"


class BundleError(UserError):
    """A bundle that cannot be used: the message says which file and what is wrong."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file, opened without following a symlink and checked on the open
    descriptor (a FIFO, device or link swapped in is refused, never read or waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise BundleError(f"{path}: cannot be opened as a regular file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{path}: expected a regular file, found {_kind(os.fstat(fd))}")
        digest = hashlib.sha256()
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    kinds = [(stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO")]
    kinds += [(stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def bundle_files(directory: Path) -> list[Path]:
    """Every file under `directory` but the manifest; BundleError on anything that is not a regular
    file or a directory (symlinks are never followed: `up -> ..` or `evil -> /etc` is refused)."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                if path != Path(directory) / MANIFEST:
                    found.append(path)
            elif not stat.S_ISDIR(st.st_mode):
                where = path.relative_to(directory).as_posix()
                raise BundleError(
                    f"{directory}: {where!r} is {_kind(st)}; a bundle holds regular files only"
                )
    return sorted(found)


def safe_name(name: object) -> bool:
    """A manifest path: relative, no '..', no empty or '.' parts."""
    if not isinstance(name, str) or not name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def empty_directories(directory: Path, files: list[Path]) -> list[str]:
    """Directories under `directory` that hold none of `files` (no manifest lists them)."""
    holders = {p.parent for p in files} | {Path(directory)}
    out = []
    for root, dirs, _ in os.walk(directory, followlinks=False):
        for name in dirs:
            path = Path(root) / name
            if not any(h == path or path in h.parents for h in holders):
                out.append(path.relative_to(directory).as_posix())
    return sorted(out)
