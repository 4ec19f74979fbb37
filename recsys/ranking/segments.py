"""Ranking stage: user segments by history length and the per-segment blend weights (JSON).

Reads BlendConfig.segment_bounds; writes/reads weights.json. Bounds [0, 5, 50] give the segments
"0" | "1-5" | "6-50" | "51+" (history items).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.tracking import Tracker


def segment_labels(bounds: Sequence[int]) -> list[str]:
    """Segment names for ascending `bounds`: [0, 5, 50] -> ["0", "1-5", "6-50", "51+"]."""
    bounds = [int(b) for b in bounds]
    if not bounds or any(b < 0 for b in bounds) or sorted(set(bounds)) != bounds:
        raise ValueError(
            f"segment_bounds: expected strictly ascending non-negative ints, found {bounds}"
        )
    labels, low = [], 0
    for bound in bounds:
        labels.append(str(bound) if low == bound else f"{low}-{bound}")
        low = bound + 1
    labels.append(f"{low}+")
    return labels


def segment_of(history_lengths: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    """Segment number (index into segment_labels) of each history length. (n,) int64."""
    lengths = np.asarray(history_lengths, dtype=np.int64)
    bounds_arr = np.asarray(bounds, dtype=np.int64)
    return np.searchsorted(bounds_arr, lengths, side="left").astype(np.int64)


@dataclass(frozen=True)
class SegmentWeights:
    """Blend weights per segment (source -> weight, summing to 1) and a global fallback.

    `stats` keeps what learning saw (users and validation NDCG per segment) for the log.
    """

    bounds: list[int]
    default: dict[str, float]
    per_segment: dict[str, dict[str, float]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = set(segment_labels(self.bounds))
        unknown = set(self.per_segment) - labels
        if unknown:
            raise ValueError(
                f"SegmentWeights: unknown segments {sorted(unknown)}; expected some of "
                f"{segment_labels(self.bounds)} for bounds {self.bounds}"
            )
        for name, weights in {"default": self.default, **self.per_segment}.items():
            bad = {s: w for s, w in weights.items() if not (np.isfinite(w) and w >= 0)}
            if bad or not weights:
                raise ValueError(
                    f"SegmentWeights[{name}]: expected non-negative finite weights, found {weights}"
                )

    @classmethod
    def uniform(cls, sources: Sequence[str], bounds: Sequence[int]) -> SegmentWeights:
        return cls.fixed({s: 1.0 for s in sources}, bounds)

    @classmethod
    def fixed(cls, weights: Mapping[str, float], bounds: Sequence[int]) -> SegmentWeights:
        """The same weights (normalised to sum 1) in every segment."""
        total = float(sum(weights.values()))
        if total <= 0:
            raise ValueError(f"fixed weights must have a positive sum, found {dict(weights)}")
        return cls(list(bounds), {s: float(w) / total for s, w in weights.items()})

    @property
    def labels(self) -> list[str]:
        return segment_labels(self.bounds)

    def for_segment(self, label: str) -> dict[str, float]:
        return self.per_segment.get(label, self.default)

    def matrix(self, segments: np.ndarray, sources: Sequence[str]) -> np.ndarray:
        """(n, n_sources) weight rows for segment numbers `segments` (n,); missing source -> 0."""
        table = np.array(
            [[self.for_segment(lab).get(s, 0.0) for s in sources] for lab in self.labels],
            dtype=np.float64,
        )  # (n_segments, n_sources)
        return table[np.asarray(segments, dtype=np.int64)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bounds": self.bounds,
            "default": self.default,
            "per_segment": self.per_segment,
            "stats": self.stats,
        }

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), "utf-8")

    @classmethod
    def load(cls, path: Path) -> SegmentWeights:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = {"bounds", "default"} - set(raw)
        if missing:
            raise ValueError(f"{path}: missing keys {sorted(missing)}; expected weights JSON")
        return cls(
            [int(b) for b in raw["bounds"]],
            {s: float(w) for s, w in raw["default"].items()},
            {seg: {s: float(w) for s, w in ws.items()} for seg, ws in raw["per_segment"].items()},
            raw.get("stats", {}),
        )

    def log(self, tracker: Tracker, prefix: str = "blend", scored_on: str = "valid") -> None:
        """Weights as params (`blend.weight.<segment>.<source>`), the NDCG of the round they
        were learned on as metrics (`blend.valid_ndcg.<segment>`)."""
        params = {f"{prefix}.weight.all.{s}": round(w, 4) for s, w in self.default.items()}
        for seg, weights in self.per_segment.items():
            key = _key(seg)
            params.update({f"{prefix}.weight.{key}.{s}": round(w, 4) for s, w in weights.items()})
        tracker.log_params(params)
        metrics = {
            f"{prefix}.{scored_on}_ndcg.{_key(seg)}": v
            for seg, v in self.stats.get("ndcg", {}).items()
            if v is not None
        }
        if metrics:
            tracker.log_metrics(metrics)


def _key(segment: str) -> str:
    """MLflow keys allow no '+': "51+" -> "51plus"."""
    return segment.replace("+", "plus")
