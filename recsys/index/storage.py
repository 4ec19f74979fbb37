"""Index stage: FAISS index files — written atomically, read memory-mapped.

Reads and writes one FAISS index file; also reads back the search parameters stored inside it.
Memory-mapping (faiss.IO_FLAG_MMAP_IFC: faiss PR 4199, in the locked 1.15.1) makes FAISS's
arrays views of the file, so the API workers of a host share one copy in the page cache. It maps
every array FAISS holds as a MaybeOwnedVector: Flat codes, IVF inverted lists (IVF-Flat, IVF-PQ),
IndexRefineFlat's float vectors, HNSW vectors and neighbour lists (its levels and offsets, ~12 B
per item, are copied). The older IO_FLAG_MMAP maps IVF lists only (not a refine's vectors).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from recsys.index.backend import faiss


def write_index(index: faiss.Index, path: Path) -> None:
    """Write `index` to `path`: a temp file in the same folder, then an atomic rename (a reader
    that mapped the old file keeps its old inode; nothing is ever rewritten in place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_index(path: Path, mmap: bool = True) -> faiss.Index:
    """Read an index file, memory-mapped unless mmap=False (a mapped index is read-only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FAISS index file not found: {path}")
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)


def owned_copy(index: faiss.Index) -> faiss.Index:
    """A copy in private memory. clone_index keeps mapped arrays as views, and FAISS aborts the
    process (not an exception) when a view has to grow, so go through a serialised buffer."""
    return faiss.deserialize_index(faiss.serialize_index(index))


def stored_parameters(index: faiss.Index) -> dict[str, int]:
    """The search parameters saved inside `index`, as IndexConfig keys."""
    top = faiss.downcast_index(index)
    stored = {}
    if isinstance(top, faiss.IndexRefine):
        stored["rerank_factor"] = max(1, round(top.k_factor))
        top = faiss.downcast_index(top.base_index)
    if isinstance(top, faiss.IndexIVF):
        stored["nprobe"] = top.nprobe
    elif isinstance(top, faiss.IndexHNSW):
        stored["ef_search"] = top.hnsw.efSearch
    return stored
