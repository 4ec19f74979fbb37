"""Evaluation stage: A/B comparison. Reads per-user metrics of two variants and user segments
(bool masks); writes a Comparison: means, bootstrap CIs, lift, paired tests and corrected p-values
per metric and segment. The verdict drawn from it is recsys.evaluation.verdict.

Families: the pre-registered primary metric (config `primary_metric`, plus `primary_family`) over
all users is the confirmatory family; every other cell (secondary metrics, every segment) is
exploratory. Each family is corrected on its own, so adding segments or secondary metrics never
changes the primary decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recsys.config import EvalConfig
from recsys.evaluation.stats import adjust_pvalues, bootstrap_means, paired_tests, percentile_ci

ALL_USERS = "all"
PRIMARY, EXPLORATORY = "primary", "exploratory"  # the two correction families


@dataclass
class Cell:
    """One metric on one segment: A vs B."""

    metric: str
    segment: str
    n_users: int
    mean_a: float
    ci_a: tuple[float, float]
    mean_b: float
    ci_b: tuple[float, float]
    diff: float  # mean_b - mean_a
    diff_ci: tuple[float, float]
    lift: float  # mean_b / mean_a - 1 (inf when mean_a == 0 < mean_b, nan when both are 0)
    lift_ci: tuple[float, float]
    p_values: dict[str, float]  # every test run, by name
    p_value: float  # the decision test's
    p_adjusted: float = float("nan")  # corrected within the cell's family
    significant: bool = False
    family: str = EXPLORATORY  # PRIMARY (pre-registered, decides) or EXPLORATORY


@dataclass
class Comparison:
    """Every cell of an A/B comparison plus what produced it; `to_dict()` is strict JSON."""

    name_a: str
    name_b: str
    k: int
    test: str  # name of the decision test, a key of Cell.p_values
    correction: str
    alpha: float
    n_bootstrap: int
    seed: int
    unit: str = "users"  # what n counts (users: the independent units of both reports)
    cells: list[Cell] = field(default_factory=list)

    def family(self, name: str) -> list[Cell]:
        return [c for c in self.cells if c.family == name]

    def cell(self, metric: str, segment: str = ALL_USERS) -> Cell:
        for c in self.cells:
            if c.metric == metric and c.segment == segment:
                return c
        raise KeyError(
            f"no cell for metric {metric!r}, segment {segment!r}; have metrics "
            f"{self.metrics} and segments {self.segments}"
        )

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric for c in self.cells))

    @property
    def segments(self) -> list[str]:
        return list(dict.fromkeys(c.segment for c in self.cells))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; nan and inf become None."""
        return _json_safe(asdict(self))

    def headline(self) -> dict[str, dict[str, Any]]:
        """metric -> A's and B's mean over all users, the lift, the decision test's p-value,
        whether it is significant and its family: what a command's --json reports."""
        fields = ("mean_a", "mean_b", "lift", "p_value", "p_adjusted", "significant", "family")
        cells = [c for c in self.cells if c.segment == ALL_USERS]
        return _json_safe({c.metric: {f: getattr(c, f) for f in fields} for c in cells})


def compare(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    segments: Mapping[str, np.ndarray],
    config: EvalConfig,
    names: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Compare paired per-user metrics {metric: (n_users,)} of A and B on every segment.

    segments: {name: bool mask (n_users,)}; an "all" segment is added when missing. Segments
    with fewer than 2 users get means but no test. Bootstrap resamples are seeded and shared by
    A and B (paired), so the lift CI reflects the pairing. The primary family is
    `primary_metrics(config)` over all users (module docstring).
    """
    metrics = [m for m in a if m in b]
    if set(a) != set(b):
        raise ValueError(
            f"compare: A has metrics {sorted(a)}, B has {sorted(b)}; expected the same"
        )
    n_users = _common_length(a, b)
    masks = _check_segments(segments, n_users)
    comparison = Comparison(
        name_a=names[0],
        name_b=names[1],
        k=config.k,
        test=config.test,
        correction=config.correction,
        alpha=config.alpha,
        n_bootstrap=config.bootstrap,
        seed=config.seed,
    )
    for s, (segment, mask) in enumerate(masks.items()):
        cols_a = np.stack([np.asarray(a[m], dtype=np.float64)[mask] for m in metrics], axis=1)
        cols_b = np.stack([np.asarray(b[m], dtype=np.float64)[mask] for m in metrics], axis=1)
        comparison.cells += _segment_cells(
            segment, metrics, cols_a, cols_b, config, config.seed + s
        )
    assign_families(comparison, primary_metrics(config))
    adjust(comparison)
    return comparison


def primary_metrics(config: EvalConfig) -> list[str]:
    """The pre-registered confirmatory metrics: the deciding one first, then primary_family."""
    return list(dict.fromkeys([config.primary_metric, *config.primary_family]))


def assign_families(comparison: Comparison, primary: list[str]) -> None:
    """The primary metrics over all users are PRIMARY; every other cell EXPLORATORY (in place)."""
    for cell in comparison.cells:
        confirmatory = cell.segment == ALL_USERS and cell.metric in primary
        cell.family = PRIMARY if confirmatory else EXPLORATORY


def adjust(comparison: Comparison) -> None:
    """Fill p_adjusted and significant within each family of cells (in place)."""
    for family in (PRIMARY, EXPLORATORY):
        cells = comparison.family(family)
        adjusted = adjust_pvalues([c.p_value for c in cells], comparison.correction)
        for cell, p in zip(cells, adjusted, strict=True):
            cell.p_adjusted = float(p)
            cell.significant = bool(np.isfinite(p) and p < comparison.alpha)


def _segment_cells(
    segment: str,
    metrics: list[str],
    a: np.ndarray,
    b: np.ndarray,
    config: EvalConfig,
    seed: int,
) -> list[Cell]:
    """Cells of one segment. a, b: (n_segment_users, n_metrics)."""
    n, m = a.shape
    boot = bootstrap_means(np.concatenate([a, b], axis=1), config.bootstrap, seed)  # (B, 2m)
    boot_a, boot_b = boot[:, :m], boot[:, m:]
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_lift = boot_b / boot_a - 1.0  # (B, m); inf/nan samples are dropped by percentile_ci
    ci_a, ci_b = percentile_ci(boot_a, config.alpha), percentile_ci(boot_b, config.alpha)
    ci_d, ci_l = (
        percentile_ci(boot_b - boot_a, config.alpha),
        percentile_ci(boot_lift, config.alpha),
    )
    cells = []
    for j, metric in enumerate(metrics):
        mean_a, mean_b = (float(a[:, j].mean()), float(b[:, j].mean())) if n else (math.nan,) * 2
        tests = paired_tests(a[:, j], b[:, j])
        cells.append(
            Cell(
                metric=metric,
                segment=segment,
                n_users=int(n),
                mean_a=mean_a,
                ci_a=(float(ci_a[0][j]), float(ci_a[1][j])),
                mean_b=mean_b,
                ci_b=(float(ci_b[0][j]), float(ci_b[1][j])),
                diff=mean_b - mean_a,
                diff_ci=(float(ci_d[0][j]), float(ci_d[1][j])),
                lift=relative_lift(mean_a, mean_b),
                lift_ci=(float(ci_l[0][j]), float(ci_l[1][j])),
                p_values=tests,
                p_value=tests[config.test],
            )
        )
    return cells


def relative_lift(mean_a: float, mean_b: float) -> float:
    """mean_b / mean_a - 1; inf (or -inf) when A is 0 and B is not, nan when both are 0."""
    if mean_a == 0:
        return math.nan if mean_b == 0 else math.copysign(math.inf, mean_b)
    return mean_b / mean_a - 1.0


def _common_length(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> int:
    lengths = {
        f"{side}.{m}": np.asarray(v).shape for side, d in (("A", a), ("B", b)) for m, v in d.items()
    }
    shapes = set(lengths.values())
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"compare: expected one (n_users,) array per metric, found {lengths}")
    return next(iter(shapes))[0]


def _check_segments(segments: Mapping[str, np.ndarray], n_users: int) -> dict[str, np.ndarray]:
    masks = {ALL_USERS: np.ones(n_users, dtype=bool)}
    for name, mask in segments.items():
        mask = np.asarray(mask)
        if mask.shape != (n_users,) or mask.dtype != bool:
            raise ValueError(
                f"segment {name!r}: expected a bool mask of shape ({n_users},), "
                f"found {mask.dtype} {mask.shape}"
            )
        masks[name] = mask
    return masks


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
