"""Ranking stage: a popularity prior from item text, for items nobody has interacted with yet.

Reads base-model text features of the items (n_items, hidden) and their training interaction
counts (n_items,); writes a per-item bias (n_items,) in cosine units for the content recommender.

Popularity knows nothing about a new item, and the towers' cosine is trained with a logQ
correction, so it does not rank by popularity either. A ridge regression from the text features
to log(1 + count), fitted on items with interactions, predicts how popular a never-interacted
item will be; its prediction, centred on the mean of the items it was fitted on, is added to the
towers' logit (cosine / temperature) of those items only: bias = temperature * weight * centred
prediction. Items with interactions get 0 (the collaborative sources know them), and an item of
average predicted popularity is ranked exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.vectors import normalize_rows

RIDGE_LAMBDA = 1.0  # on unit-normalised features; fixed, not tuned on test data


@dataclass(frozen=True)
class TextPrior:
    """Centred ridge regression: predict(x) = (unit(x) - mean) . coef  (mean 0 on its fit set)."""

    mean: np.ndarray  # (hidden,) mean unit feature of the items it was fitted on
    coef: np.ndarray  # (hidden,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(n,) predicted log(1 + count) minus its mean over the fitted items."""
        unit = _unit_rows(features)
        if unit.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"text prior: expected features of width {self.coef.shape[0]}, "
                f"found shape {unit.shape}"
            )
        return (unit - self.mean) @ self.coef


def fit_text_prior(
    features: np.ndarray, counts: np.ndarray, lam: float = RIDGE_LAMBDA
) -> TextPrior:
    """Ridge from unit-normalised features to log(1 + count) over the items with count > 0."""
    features = np.asarray(features, dtype=np.float64)
    counts = np.asarray(counts)
    if features.ndim != 2 or counts.shape != (features.shape[0],):
        raise ValueError(
            f"text prior: expected features (n_items, hidden) and counts (n_items,), found "
            f"{features.shape} and {counts.shape}"
        )
    warm = np.flatnonzero(counts > 0)
    if warm.size == 0:
        raise ValueError("text prior: no item has an interaction to fit on")
    x = _unit_rows(features[warm])  # (n_warm, hidden)
    target = np.log1p(counts[warm].astype(np.float64))
    mean = x.mean(axis=0)
    xc = x - mean
    coef = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (target - target.mean()))
    return TextPrior(mean, coef)


def cold_item_bias(features: np.ndarray, counts: np.ndarray, scale: float) -> np.ndarray:
    """(n_items,) float32: scale * centred predicted log-popularity for items with count 0, and 0
    for the others. All zeros when scale is 0 or no item (or every item) has interactions."""
    counts = np.asarray(counts)
    bias = np.zeros(counts.shape[0], dtype=np.float32)
    cold = counts <= 0
    if scale == 0 or not cold.any() or cold.all():
        return bias
    prior = fit_text_prior(features, counts)
    bias[cold] = scale * prior.predict(np.asarray(features)[cold])
    return bias


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"text prior: expected a 2-d feature matrix, found shape {x.shape}")
    return normalize_rows(x, np.float64)
