"""Index stage: the one `import faiss`, failing with what to install when the wheel is absent.

Reads nothing; gives the faiss module to the other index modules. FAISS comes from an extra
(`recsys-engine[cpu]` installs faiss-cpu, `[gpu]` faiss-gpu-cu12), so a base install lacks it.
"""

from __future__ import annotations

MISSING_FAISS = "faiss is not installed: install recsys-engine[cpu] or recsys-engine[gpu]"

try:
    import faiss
except ModuleNotFoundError as exc:
    if exc.name != "faiss":  # faiss itself is there but one of its own imports is not
        raise
    raise ModuleNotFoundError(MISSING_FAISS, name="faiss") from None

__all__ = ["MISSING_FAISS", "faiss"]
