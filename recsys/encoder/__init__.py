"""Stage: encoder — the BERT two-tower model, its training and batch embedding.

Names are exported lazily (PEP 562), so `import recsys.encoder.backbone` does not pull in the
training code, and nothing heavy happens at import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TwoTowerEncoder": "recsys.encoder.model",
    "EncoderLoadError": "recsys.encoder.model",
    "TrainResult": "recsys.encoder.train",
    "train_encoder": "recsys.encoder.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recsys.encoder' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
