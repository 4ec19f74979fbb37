"""Bundle stage, read side: the arrays of a bundle (.npy and uncompressed .npz members) opened
memory-mapped and read-only (reads bundle files; writes nothing).

A mapped array lives in the host's page cache, so the API workers of one host share one copy of
item vectors, factor matrices and precomputed top-k instead of each holding its own. Setting
RECSYS_BUNDLE_MMAP=0 reads private copies instead (a filesystem where mapping is slow or unsafe;
benchmarks/scaleout.py compares the two). Nothing here normalises or casts: a bundle stores its
arrays in the form they are served in (recsys.ranking.content normalises at write time).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

MMAP_ENV = "RECSYS_BUNDLE_MMAP"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature .. name/extra lengths


def mmap_enabled() -> bool:
    """Whether bundle arrays are memory-mapped (the default) or read into private memory."""
    value = os.environ.get(MMAP_ENV, "1").strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(
            f"{MMAP_ENV}: expected 1/0 (or true/false, yes/no, on/off), found {value!r}"
        )
    return value in ("1", "true", "yes", "on")


def load_npy(path: Path, mmap: bool | None = None) -> np.ndarray:
    """One .npy file: a read-only view of its memory map unless mapping is off (then a private
    array). A plain ndarray over the map, not np.memmap, as load_npz returns."""
    use_mmap = mmap_enabled() if mmap is None else mmap
    return np.asarray(np.load(path, mmap_mode="r" if use_mmap else None, allow_pickle=False))


def load_npz(path: Path, mmap: bool | None = None) -> dict[str, np.ndarray]:
    """Every member of an .npz (np.savez) by name; stored (uncompressed) members are read-only
    views of a memory map of the archive unless mapping is off (plain ndarrays over the map:
    np.memmap's Python-level indexing costs microseconds per access on the request path);
    compressed or empty ones are read."""
    use_mmap = mmap_enabled() if mmap is None else mmap
    if not use_mmap:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    out = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            mapped = (
                _map_member(path, fh, info) if info.compress_type == zipfile.ZIP_STORED else None
            )
            if mapped is None:
                with archive.open(info) as member:
                    mapped = np.lib.format.read_array(member, allow_pickle=False)
            out[name] = np.asarray(mapped)  # a plain view: np.memmap is slow to index
    return out


def _map_member(path: Path, fh, info: zipfile.ZipInfo) -> np.ndarray | None:
    """An uncompressed member as np.memmap over the archive: its data starts after the local
    header (30 bytes + name + extra field) and the .npy header. None for an empty array."""
    fh.seek(info.header_offset)
    signature, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise ValueError(f"{path}: member {info.filename!r}: no zip local header")
    fh.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise ValueError(f"{path}: member {info.filename!r} holds Python objects (not loaded)")
    if int(np.prod(shape)) == 0:
        return None  # np.memmap cannot map zero bytes
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order=order)


def is_mapped(array: np.ndarray) -> bool:
    """Whether `array` (or what it is a view of) is a memory map of a file."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array.base, np.ndarray) else None
    return False
