"""Serving stage: per-worker thread limits for torch, FAISS and OpenMP (set in each gunicorn worker
right after the fork, before any model is loaded)."""

from __future__ import annotations

import os

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Cap the native thread pools of this process at n threads each.

    Environment variables first (OpenMP and BLAS read them when they initialise), then the live
    settings of torch and FAISS. Several workers x several request threads already use the cores,
    so one native thread per worker is the usual choice.
    """
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(n)
    import faiss
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process (it can only be set before first use)
        pass
    faiss.omp_set_num_threads(n)
