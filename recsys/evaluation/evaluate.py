"""Evaluation stage: the offline A/B core the nightly gate calls. Reads each variant's ranked
item_idx lists and the held-out data (EvalInput); writes per-user metrics, beyond-accuracy
figures, a Comparison and a Verdict (ABResult), and the per-user table the report exports.
Rendering is recsys.evaluation.report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from recsys.config import BlendConfig, EvalConfig
from recsys.evaluation.compare import Comparison, compare
from recsys.evaluation.examples import ExampleList
from recsys.evaluation.metrics import (
    catalog_coverage,
    intra_list_diversity,
    list_overlap,
    novelty,
    per_user_metrics,
    popularity_bias,
)
from recsys.evaluation.report import ReportExtras
from recsys.evaluation.segments import segment_families, user_segments
from recsys.evaluation.verdict import Verdict, verdict
from recsys.schema import USER_ID

DEFAULT_BOUNDS = tuple(BlendConfig().segment_bounds)


@dataclass(frozen=True)
class EvalInput:
    """What both variants are evaluated on; row u of every array is the same user."""

    relevant: Sequence[np.ndarray]  # per user: held-out item_idx (>= 1 each)
    history_lengths: np.ndarray  # (n_users,) training interactions per user
    item_popularity: np.ndarray  # (n_items,) training interactions per item
    item_vectors: np.ndarray | None = None  # (n_items, dim), for intra-list diversity

    def __post_init__(self) -> None:
        n = len(self.relevant)
        if np.shape(self.history_lengths) != (n,):
            raise ValueError(
                f"EvalInput: history_lengths must have shape ({n},) like relevant, "
                f"found {np.shape(self.history_lengths)}"
            )
        if np.ndim(self.item_popularity) != 1:
            raise ValueError(
                "EvalInput: item_popularity must be (n_items,), "
                f"found {np.shape(self.item_popularity)}"
            )
        vectors = self.item_vectors
        if vectors is not None and (np.ndim(vectors) != 2 or len(vectors) != self.n_items):
            raise ValueError(
                f"EvalInput: item_vectors must be ({self.n_items}, dim), found {np.shape(vectors)}"
            )

    @property
    def n_users(self) -> int:
        return len(self.relevant)

    @property
    def n_items(self) -> int:
        return int(np.shape(self.item_popularity)[0])


@dataclass
class VariantResult:
    """One variant's per-user figures: accuracy metrics and beyond-accuracy ones."""

    name: str
    metrics: dict[str, np.ndarray]  # {metric: (n_users,)}
    beyond: dict[str, np.ndarray]  # {popularity_bias | novelty | diversity: (n_users,)}, nan = n/a
    coverage: float  # share of the catalog recommended to anyone
    recommended_popularity: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def summary(self) -> dict[str, float]:
        """Means over users (nan entries skipped) plus coverage."""
        out = {name: float(np.mean(v)) for name, v in self.metrics.items()}
        for name, values in self.beyond.items():
            finite = values[np.isfinite(values)]
            out[name] = float(finite.mean()) if finite.size else float("nan")
        out["coverage"] = self.coverage
        return out


@dataclass
class ABResult:
    a: VariantResult
    b: VariantResult
    comparison: Comparison
    verdict: Verdict
    overlap: np.ndarray  # (n_users,) Jaccard of A's and B's lists
    segments: dict[str, list] = field(default_factory=dict)  # family -> (n_users,) segment name
    user_ids: list[str] | None = None  # external ids of the rows, when the caller knows them
    examples: list[ExampleList] = field(default_factory=list)  # filled by the caller

    def per_user(self) -> pl.DataFrame | None:
        """One row per user: user_id, segment_<family>..., <metric>_a, <metric>_b (None when
        the user ids are not known)."""
        if self.user_ids is None:
            return None
        columns: dict[str, list | np.ndarray] = {USER_ID: list(self.user_ids)}
        columns |= {f"segment_{family}": labels for family, labels in self.segments.items()}
        for metric in self.a.metrics:
            columns[f"{metric}_a"] = self.a.metrics[metric]
            columns[f"{metric}_b"] = self.b.metrics[metric]
        return pl.DataFrame(columns)

    def extras(self, title: str = "Offline A/B evaluation", **context: str) -> ReportExtras:
        """What the HTML report shows beyond the comparison."""
        sa, sb = self.a.summary(), self.b.summary()
        beyond = {n: {self.a.name: sa[n], self.b.name: sb[n]} for n in BEYOND_ROWS if n in sa}
        return ReportExtras(
            title=title,
            context=dict(context),
            beyond=beyond,
            overlap=float(self.overlap.mean()),
            differences={m: self.b.metrics[m] - self.a.metrics[m] for m in self.a.metrics},
            recommended_popularity={
                self.a.name: self.a.recommended_popularity,
                self.b.name: self.b.recommended_popularity,
            },
            examples=list(self.examples),
            per_user=self.per_user(),
        )


BEYOND_ROWS = ("coverage", "popularity_bias", "novelty", "diversity")


def evaluate_variant(
    ranked: np.ndarray, data: EvalInput, config: EvalConfig, name: str = "A"
) -> VariantResult:
    """Per-user accuracy @k and beyond-accuracy figures of one variant's lists (n_users, >=k)."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != data.n_users:
        raise ValueError(
            f"variant {name}: expected ranked of shape ({data.n_users}, >={config.k}), "
            f"found {ranked.shape}"
        )
    metrics = per_user_metrics(ranked, data.relevant, config.k, config.metrics)
    top = ranked[:, : config.k]  # (n, k)
    beyond = {
        "popularity_bias": popularity_bias(top, data.item_popularity),
        "novelty": novelty(top, data.item_popularity),
    }
    if data.item_vectors is not None:
        beyond["diversity"] = intra_list_diversity(top, data.item_vectors)
    recommended = top[top >= 0]
    return VariantResult(
        name=name,
        metrics=metrics,
        beyond=beyond,
        coverage=catalog_coverage(top, data.n_items),
        recommended_popularity=np.asarray(data.item_popularity)[recommended],
    )


def evaluate_ab(
    ranked_a: np.ndarray,
    ranked_b: np.ndarray,
    data: EvalInput,
    config: EvalConfig,
    bounds: Sequence[int] = DEFAULT_BOUNDS,
    names: tuple[str, str] = ("A", "B"),
    user_ids: Sequence[str] | None = None,
) -> ABResult:
    """Evaluate both variants on the same users, compare them on every segment, decide.
    user_ids: the rows' external ids (n_users,), for the per-user export."""
    a = evaluate_variant(ranked_a, data, config, names[0])
    b = evaluate_variant(ranked_b, data, config, names[1])
    families = segment_families(data.history_lengths, data.relevant, data.item_popularity, bounds)
    segments = {name: mask for family in families.values() for name, mask in family.items()}
    comparison = compare(a.metrics, b.metrics, segments, config, names)
    overlap = list_overlap(np.asarray(ranked_a)[:, : config.k], np.asarray(ranked_b)[:, : config.k])
    if user_ids is not None and len(user_ids) != data.n_users:
        raise ValueError(f"user_ids: expected {data.n_users} ids, found {len(user_ids)}")
    return ABResult(
        a,
        b,
        comparison,
        verdict(comparison, config),
        overlap,
        segments=user_segments(families, data.n_users),
        user_ids=None if user_ids is None else [str(u) for u in user_ids],
    )
