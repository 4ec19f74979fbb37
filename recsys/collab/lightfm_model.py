"""Collab stage: LightFM (WARP by default, optional hybrid item features) as a FactorModel.

Reads an interaction matrix (n_users, n_items) and optional item token features (n_items, n_tokens);
writes collab.npz / collab.json through FactorModel.save. Scoring never calls LightFM.predict:
item representations are precomputed once, so scoring all users is one matrix product per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import scipy.sparse as sp

from recsys.collab.factors import (
    FactorModel,
    check_interactions,
    csr_from_arrays,
    csr_to_arrays,
)
from recsys.config import CollabConfig


def hybrid_features(token_features: sp.spmatrix) -> sp.csr_matrix:
    """Identity (one feature per item) + token features, rows summing to 1 (lightfm Dataset's
    normalisation). (n_items, n_items + n_tokens) float32."""
    tokens = sp.csr_matrix(token_features, dtype=np.float32)
    n_items = tokens.shape[0]
    features = sp.hstack([sp.identity(n_items, dtype=np.float32, format="csr"), tokens]).tocsr()
    sums = np.asarray(features.sum(axis=1)).ravel()  # (n_items,) >= 1 thanks to the identity
    return sp.csr_matrix(sp.diags(1.0 / sums) @ features, dtype=np.float32)


class LightFMModel(FactorModel):
    """LightFM factors. With item features, an item's vector is the weighted sum of its features'
    embeddings (so items no one interacted with still get a vector from their tokens)."""

    kind = "lightfm"

    def __init__(
        self,
        config: CollabConfig,
        user_embeddings: np.ndarray,
        user_biases: np.ndarray,
        feature_embeddings: np.ndarray,
        feature_biases: np.ndarray,
        user_trained: np.ndarray,
        item_trained: np.ndarray,
        item_features: sp.csr_matrix | None = None,
    ):
        self.feature_embeddings = np.asarray(feature_embeddings, dtype=np.float32)  # (n_feat, d)
        self.feature_biases = np.asarray(feature_biases, dtype=np.float32)  # (n_feat,)
        self.item_features = item_features  # (n_items, n_feat) or None (identity)
        if item_features is None:
            item_factors, item_biases = self.feature_embeddings, self.feature_biases
        else:
            item_factors = item_features @ self.feature_embeddings  # (n_items, d)
            item_biases = item_features @ self.feature_biases  # (n_items,)
        super().__init__(
            config,
            user_embeddings,
            user_biases,
            item_factors,
            item_biases,
            user_trained,
            item_trained,
        )
        self.lightfm = None  # the lightfm.LightFM object when fitted in this process

    @classmethod
    def fit(
        cls,
        matrix: sp.spmatrix,
        config: CollabConfig,
        item_features: sp.spmatrix | None = None,
    ) -> LightFMModel:
        """Fit on (n_users, n_items) weights; `item_features` (n_items, n_tokens) = hybrid mode.
        config.fits > 1: that many fits from consecutive seeds, joined (joined()); with
        config.threads == 0 (all cores) they run side by side, the cores shared among them
        (LightFM's threads scale poorly: on 2 cores two 1-thread fits side by side take 0.57x
        the time of two 2-thread fits in turn). Bit-for-bit repeatable only where each fit has
        one thread (config.threads == 1, or 0 with no more cores than fits): LightFM's threads
        race (Hogwild)."""
        matrix = check_interactions(matrix)  # once, before fits that may share it
        seeds = [config.seed + n for n in range(config.fits)]
        if config.threads or config.fits == 1:
            settings = [config.model_copy(update={"seed": seed}) for seed in seeds]
            fits = [cls._fit_one(matrix, one, item_features) for one in settings]
        else:
            threads = max(1, (os.cpu_count() or 1) // config.fits)
            update = [{"seed": seed, "threads": threads} for seed in seeds]
            settings = [config.model_copy(update=u) for u in update]
            fit_one = partial(cls._fit_one, matrix, item_features=item_features)
            with ThreadPoolExecutor(config.fits) as pool:  # LightFM's loops release the GIL
                fits = list(pool.map(fit_one, settings))
        return fits[0] if len(fits) == 1 else cls.joined(fits, config)

    @classmethod
    def joined(cls, fits: Sequence[LightFMModel], config: CollabConfig) -> LightFMModel:
        """One model whose score is the sum of the fits' scores: embeddings side by side
        (n, d * len(fits)), biases added. Fold-in (the mean of history item vectors) joins the
        same way, so unknown users too score the sum."""
        first = fits[0]
        return cls(
            config,
            np.hstack([f.user_factors for f in fits]),
            np.sum([f.user_biases for f in fits], axis=0),
            np.hstack([f.feature_embeddings for f in fits]),
            np.sum([f.feature_biases for f in fits], axis=0),
            first.user_trained,
            first.item_trained,
            first.item_features,
        )

    @classmethod
    def _fit_one(
        cls, matrix: sp.spmatrix, config: CollabConfig, item_features: sp.spmatrix | None
    ) -> LightFMModel:
        from lightfm import LightFM  # imported here: loading a saved model does not need it

        matrix = check_interactions(matrix)
        features = None
        if item_features is not None:
            if item_features.shape[0] != matrix.shape[1]:
                raise ValueError(
                    f"item_features: expected {matrix.shape[1]} rows (one per item), "
                    f"found {item_features.shape[0]}"
                )
            features = hybrid_features(item_features)
        interactions = matrix.tocoo()
        weights = None
        if not np.all(interactions.data == 1.0):
            if config.loss == "warp-kos":
                raise ValueError("CollabConfig.loss='warp-kos' cannot use interaction weights")
            weights = interactions.copy()  # lightfm: sample_weight has the interactions' layout
        interactions.data = np.ones_like(interactions.data)
        model = LightFM(
            no_components=config.factors,
            loss=config.loss,
            learning_rate=config.learning_rate,
            item_alpha=config.item_alpha,
            user_alpha=config.user_alpha,
            random_state=config.seed,
        )
        threads = config.threads or os.cpu_count() or 1
        model.fit(
            interactions,
            item_features=features,
            sample_weight=weights,
            epochs=config.epochs,
            num_threads=threads,
        )
        fitted = cls(
            config,
            model.user_embeddings,
            model.user_biases,
            model.item_embeddings,
            model.item_biases,
            np.diff(matrix.indptr) > 0,
            # with features every item has a learned vector (from its tokens); else only seen ones
            np.ones(matrix.shape[1], bool) if features is not None else matrix.getnnz(axis=0) > 0,
            features,
        )
        fitted.lightfm = model
        return fitted

    def fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Mean of the history items' vectors (n, d); an empty history gives a zero vector."""
        out = np.zeros((len(histories), self.item_factors.shape[1]), dtype=np.float32)
        for row, history in enumerate(histories):
            history = self.usable_history(history)
            if history.size:
                out[row] = self.item_factors[history].mean(axis=0)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "user_embeddings": self.user_factors,
            "user_biases": self.user_biases,
            "feature_embeddings": self.feature_embeddings,
            "feature_biases": self.feature_biases,
        }
        if self.item_features is not None:
            arrays.update(csr_to_arrays("item_features", self.item_features))
        return arrays

    @classmethod
    def from_arrays(cls, config: CollabConfig, arrays: dict[str, np.ndarray]) -> LightFMModel:
        features = None
        if "item_features_data" in arrays:
            features = csr_from_arrays("item_features", arrays)
        return cls(
            config,
            arrays["user_embeddings"],
            arrays["user_biases"],
            arrays["feature_embeddings"],
            arrays["feature_biases"],
            arrays["user_trained"],
            arrays["item_trained"],
            features,
        )
