"""Stage: encoder (inference) — the BERT two-tower model, its backbone and batch embedding.

Training the towers is recsys.training. Names are exported lazily (PEP 562), so
`import recsys.encoder.backbone` does not pull in torch-heavy modules at import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TwoTowerEncoder": "recsys.encoder.model",
    "EncoderLoadError": "recsys.encoder.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recsys.encoder' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
