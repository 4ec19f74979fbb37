"""Index stage: FAISS VectorIndex over item vectors (see recsys/index/faiss_index.py)."""

from recsys.index.factory import resolve_factory
from recsys.index.faiss_index import VectorIndex, build

__all__ = ["VectorIndex", "build", "resolve_factory"]
