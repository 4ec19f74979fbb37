"""Ground: the one row normaliser — L2-normalised rows of a vector matrix, zero rows kept zero.

Every stage that needs unit vectors (content scores, the FAISS index, explanations, the text
prior, collaborative item similarity, list diversity) normalises through this function.
"""

from __future__ import annotations

import numpy as np


def normalize_rows(vectors: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """(n, dim) rows of unit L2 norm, as `dtype`; all-zero rows stay zero (nothing to encode).

    Rows already of unit length are kept bit for bit, so saving and loading normalised vectors
    reproduces them exactly. Always a new array."""
    vectors = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)  # (n, 1)
    unit = np.abs(norms - 1.0) < 1e-6
    return np.divide(vectors, norms, out=vectors.copy(), where=(norms > 0) & ~unit)


def check_unit_rows(vectors: np.ndarray, what: str, sample: int = 1024) -> np.ndarray:
    """`vectors` (n, dim) returned as they are (a memory map stays a map) after checking that up
    to `sample` evenly spaced rows are unit-length or zero; ValueError naming a row if not. A full
    check would read, and square into a temporary, the whole matrix."""
    n = len(vectors)
    rows = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))  # (<= sample,)
    norms = np.linalg.norm(np.asarray(vectors[rows], dtype=np.float64), axis=1)
    bad = rows[(np.abs(norms - 1.0) > 1e-4) & (norms > 0)]
    if bad.size:
        raise ValueError(
            f"{what}: expected unit-length (or zero) rows, as normalize_rows writes them; row "
            f"{int(bad[0])} has norm {float(norms[rows == bad[0]][0]):.4f}"
        )
    return vectors
