"""Evaluation stage: validity checks of a live A/B. Reads the exposure frame (recsys.evaluation.
exposures) and the configured traffic shares; writes the sample-ratio-mismatch test, the bundles
each variant served, the users seen in more than one variant, and the anonymous exposures.

These decide whether a difference between the variants can be read at all: a split of users that
is not the configured one (SRM) means the groups differ in more than the variant, so no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from recsys.evaluation.exposures import ExposureLogError
from recsys.evaluation.stats import srm_pvalue


@dataclass
class SampleRatio:
    """Identified users per variant against the configured shares (chi-square)."""

    users: dict[str, int]
    shares: dict[str, float]  # normalised to sum 1
    source: str  # where the shares came from
    p_value: float
    alpha: float

    @property
    def failed(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < self.alpha

    def describe(self) -> str:
        total = sum(self.users.values()) or 1
        seen = ", ".join(f"{v} {n} ({n / total:.1%})" for v, n in self.users.items())
        expected = "/".join(f"{100 * s:.4g}" for s in self.shares.values())
        return (
            f"users per variant {seen}; expected {expected} ({self.source}); "
            f"chi-square p = {self.p_value:.3g} (no verdict below {self.alpha:g})"
        )


def sample_ratio(
    users: Mapping[str, int], shares: Mapping[str, float] | None, alpha: float
) -> SampleRatio:
    """The SRM test over every configured variant (a configured variant nobody saw counts 0).
    shares None: equal shares over the variants in the log, and the report says so."""
    if shares is None:
        names, source = sorted(users), "equal shares: none configured"
        weights = dict.fromkeys(names, 1.0)
    else:
        weights, source = dict(shares), "configured shares"
        unknown = sorted(set(users) - set(weights))
        if unknown:
            raise ExposureLogError(
                f"exposure log: variant(s) {unknown} are not among the configured traffic shares "
                f"{weights}; pass the shares the API ran with ([serving] variants or --shares)"
            )
    if len(weights) < 2 or any(not (math.isfinite(w) and w > 0) for w in weights.values()):
        raise ExposureLogError(f"traffic shares: expected >= 2 variants with shares > 0, {weights}")
    total = sum(weights.values())
    normalised = {v: w / total for v, w in weights.items()}
    counts = {v: int(users.get(v, 0)) for v in normalised}
    p = srm_pvalue(list(counts.values()), list(normalised.values()))
    return SampleRatio(counts, normalised, source, p, alpha)


def users_per_variant(identified: pl.DataFrame) -> dict[str, int]:
    counts = identified.group_by("variant").agg(pl.col("user_id").n_unique().alias("n"))
    return dict(counts.sort("variant").iter_rows())


def crossover_users(identified: pl.DataFrame) -> list[str]:
    """Users with exposures in more than one variant (routing changed in the window)."""
    per_user = identified.group_by("user_id").agg(pl.col("variant").n_unique().alias("n"))
    return sorted(per_user.filter(pl.col("n") > 1)["user_id"].to_list())


def bundle_spans(exposures: pl.DataFrame) -> pl.DataFrame:
    """Per (variant, bundle), in time order: first and last exposure (epoch s), exposures, and
    identified users."""
    return (
        exposures.group_by("variant", "bundle")
        .agg(
            pl.col("time").min().alias("first"),
            pl.col("time").max().alias("last"),
            pl.len().alias("exposures"),
            pl.col("user_id").drop_nulls().n_unique().alias("users"),
        )
        .sort("variant", "first")
    )


def mixed_bundle_warnings(spans: pl.DataFrame) -> list[str]:
    """One warning per variant that served more than one bundle in the window."""
    out = []
    for (variant,), rows in spans.filter(pl.col("bundle").is_not_null()).group_by(
        "variant", maintain_order=True
    ):
        if rows.height < 2:
            continue
        served = "; ".join(
            f"{r['bundle']} ({when(r['first'])} to {when(r['last'])}, {r['exposures']} exposures)"
            for r in rows.iter_rows(named=True)
        )
        out.append(
            f"variant {variant} served {rows.height} bundles in the window: {served}. Its "
            "figures mix them; see the per-bundle split (exploratory segments and table)."
        )
    return out


def anonymous_counts(exposures: pl.DataFrame) -> dict[str, int]:
    """Exposures without a user id, per variant."""
    anon = exposures.filter(pl.col("user_id").is_null())
    return dict(anon.group_by("variant").len().sort("variant").iter_rows())


def when(epoch: int | None) -> str:
    """Epoch seconds as 'YYYY-MM-DD HH:MM' UTC."""
    if epoch is None:
        return "n/a"
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M")
