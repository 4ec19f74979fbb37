"""Pipeline: fingerprints of the input data and config that key a nightly run (idempotency)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from recsys import __version__
from recsys.bundle import sha256_file
from recsys.config import PipelineConfig, config_hash

_DATA_SUFFIXES = {".csv", ".parquet", ".dat", ".data", ".item", ".user", ".tsv", ".txt", ""}


def data_fingerprint(data_dir: Path) -> str:
    """sha256 over the names and bytes of the data files in a directory (not recursive)."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in Path(data_dir).iterdir() if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(f"{data_dir}: no data files found")
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()[:16]


def run_key(data_hash: str, config: PipelineConfig, attempt: str | None = None) -> str:
    """Same data + same config + same code version -> same run (nothing new to publish); a
    forced run's `attempt` id makes it a new run of the same inputs."""
    blob = f"{data_hash}:{config_hash(config)}:{__version__}"
    if attempt:
        blob += f":{attempt}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
