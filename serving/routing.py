"""Serving stage: A/B routing — a user's variant from a salted hash of the user id (reads
ServingConfig.variants and .salt; writes nothing)."""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Mapping

from recsys.bundle import POINTERS, is_version

DEFAULT_VARIANT = "CURRENT"
# A variant is a pointer name (CURRENT, CHALLENGER) or a bundle version (recsys.bundle's pattern).


def bucket(salt: str, user_id: str) -> float:
    """sha256(salt + user_id) as a number uniform in [0, 1); the same for every process and run."""
    digest = hashlib.sha256((salt + user_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64  # 64 bits: bias far below any test's power


class VariantRouter:
    """Splits [0, 1) into consecutive intervals, one per variant, in the configured order."""

    def __init__(self, variants: Mapping[str, float], salt: str):
        variants = dict(variants) or {DEFAULT_VARIANT: 1.0}
        for name, share in variants.items():
            if not (is_version(name) or name in POINTERS):
                raise ValueError(
                    f"serving.variants: {name!r} is neither a pointer {POINTERS} nor a bundle "
                    "version (letters, digits, '_.:+-')"
                )
            if not (isinstance(share, int | float) and math.isfinite(share) and share > 0):
                raise ValueError(f"serving.variants.{name}: share must be > 0, found {share!r}")
        total = float(sum(variants.values()))
        self.names: list[str] = list(variants)
        self.shares: dict[str, float] = {n: s / total for n, s in variants.items()}
        edges, acc = [], 0.0
        for name in self.names[:-1]:
            acc += self.shares[name]
            edges.append(acc)
        self._edges = edges  # upper bounds of all intervals but the last (which ends at 1)
        self.salt = salt

    @property
    def control(self) -> str:
        """The first variant: where requests without any user id go."""
        return self.names[0]

    def assign(self, user_id: str | None) -> str:
        if user_id is None or len(self.names) == 1:
            return self.control
        return self.names[bisect_right(self._edges, bucket(self.salt, user_id))]
