"""Collab stage: implicit's ALS (GPU when implicit was built with CUDA) as a FactorModel.

Reads an interaction matrix (n_users, n_items); writes collab.npz / collab.json through
FactorModel.save. Cold users are folded in with the same least-squares step ALS uses for users,
computed here in numpy so a loaded model needs neither implicit nor the training matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recsys.collab.factors import FactorModel, check_interactions
from recsys.config import CollabConfig


class ALSModel(FactorModel):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008); no biases."""

    kind = "als"

    def __init__(
        self,
        config: CollabConfig,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_trained: np.ndarray,
        item_trained: np.ndarray,
    ):
        n_users, n_items = user_factors.shape[0], item_factors.shape[0]
        zeros_u, zeros_i = np.zeros(n_users, np.float32), np.zeros(n_items, np.float32)
        super().__init__(
            config, user_factors, zeros_u, item_factors, zeros_i, user_trained, item_trained
        )
        items = self.item_factors.astype(np.float64)  # (n_items, d)
        self._yty = items.T @ items  # (d, d) Gram matrix, shared by every fold-in

    @classmethod
    def fit(
        cls,
        matrix: sp.spmatrix,
        config: CollabConfig,
        item_features: sp.spmatrix | None = None,
    ) -> ALSModel:
        """Fit on (n_users, n_items) weights; confidence = alpha * weight (as implicit does)."""
        if item_features is not None:
            raise ValueError("ALS takes no item features; use CollabConfig.model='lightfm'")
        import implicit.gpu
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = check_interactions(matrix)
        use_gpu = bool(implicit.gpu.HAS_CUDA)
        # implicit runs its own threads; nested BLAS threads thrash (and implicit warns about it)
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=config.factors,
                regularization=config.regularization,
                alpha=config.alpha,
                iterations=config.iterations,
                num_threads=config.threads,
                random_state=config.seed,
                use_gpu=use_gpu,
            )
            model.fit(matrix, show_progress=False)
        if use_gpu:
            model = model.to_cpu()
        user_trained = np.diff(matrix.indptr) > 0
        return cls(
            config, model.user_factors, model.item_factors, user_trained, matrix.getnnz(axis=0) > 0
        )

    def fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Least-squares user vectors (n, d), identical to implicit's recalculate_user:
        (YtY + sum_i (c_i - 1) y_i y_i^T + reg I) x = sum_i c_i y_i, c_i = alpha * count_i."""
        d = self.item_factors.shape[1]
        out = np.zeros((len(histories), d), dtype=np.float32)
        ridge = self.config.regularization * np.eye(d)
        for row, history in enumerate(histories):
            items, counts = np.unique(self.usable_history(history), return_counts=True)
            if not items.size:
                continue
            conf = self.config.alpha * counts.astype(np.float64)  # (m,)
            y = self.item_factors[items].astype(np.float64)  # (m, d)
            a = self._yty + (y.T * (conf - 1.0)) @ y + ridge  # (d, d)
            out[row] = np.linalg.solve(a, conf @ y)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    @classmethod
    def from_arrays(cls, config: CollabConfig, arrays: dict[str, np.ndarray]) -> ALSModel:
        return cls(
            config,
            arrays["user_factors"],
            arrays["item_factors"],
            arrays["user_trained"],
            arrays["item_trained"],
        )
