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
