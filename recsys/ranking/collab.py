"""Ranking stage: the collaborative recommender — LightFM or ALS factors behind the Recommender API.

Reads a fitted FactorModel (or an interaction matrix to fit one); writes the model's collab.npz +
collab.json. Known users score with their learned factors, others are folded in from their history,
and a query with neither scores -inf (this source cannot rank it). Items without a learned vector
(no interactions and no features) are -inf too, so blending leaves cold items to the text model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.collab import MODELS
from recsys.collab.factors import FactorModel, read_model_files
from recsys.config import CollabConfig
from recsys.ranking.base import Query, Recommender, apply_exclusions, top_k, top_similar
from recsys.ranking.retrieval import Retrieved, dense_retrieve
from recsys.vectors import normalize_rows


class CollabRecommender(Recommender):
    """Scores = user vector . item vectors + item bias, from a LightFM or ALS FactorModel."""

    def __init__(self, model: FactorModel):
        self.model = model
        self._unit_items: np.ndarray | None = None  # (n_items, d) for similar_items, built lazily

    @classmethod
    def fit(
        cls,
        interaction_matrix: sp.spmatrix,
        config: CollabConfig | None = None,
        item_features: sp.spmatrix | None = None,
    ) -> CollabRecommender:
        """Fit config.model on (n_users, n_items) weights. `item_features` (n_items, n_tokens),
        e.g. from recsys.collab.features.item_token_features, iff config.item_features."""
        config = config or CollabConfig()
        if config.item_features and item_features is None:
            raise ValueError(
                "CollabConfig.item_features is true but no item_features matrix was given "
                "(build one with recsys.collab.features.item_token_features)"
            )
        if item_features is not None and not config.item_features:
            raise ValueError("item_features given but CollabConfig.item_features is false")
        if config.model not in MODELS:  # "auto" is resolved on validation before fitting
            raise ValueError(
                f"collab.model {config.model!r}: expected one of {sorted(MODELS)} here; 'auto' "
                "is chosen by the nightly's tune step (recsys.training.collab_tuning)"
            )
        return cls(MODELS[config.model].fit(interaction_matrix, config, item_features))

    @property
    def n_items(self) -> int:
        return self.model.n_items

    @property
    def n_users(self) -> int:
        return self.model.n_users

    def user_vectors(self, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """vectors (n, d), biases (n,) and scorable (n,) bool. A user_idx outside the trained
        users, or one without training interactions, is treated as unknown: folded in."""
        model = self.model
        n, d = len(queries), model.item_factors.shape[1]
        vectors = np.zeros((n, d), dtype=np.float32)
        biases = np.zeros(n, dtype=np.float32)
        scorable = np.zeros(n, dtype=bool)
        cold: list[int] = []
        for row, query in enumerate(queries):
            u = query.user_idx
            if 0 <= u < model.n_users and model.user_trained[u]:
                vectors[row], biases[row] = model.user_factors[u], model.user_biases[u]
                scorable[row] = True
            elif model.usable_history(query.history).size:
                cold.append(row)
        if cold:
            vectors[cold] = model.fold_in([queries[row].history for row in cold])
            scorable[cold] = True
        return vectors, biases, scorable

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self._score_vectors(*self.user_vectors(queries))

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """The blend's top-n by exact MIPS over the factors: one (q, n_items) product of this
        batch (no blend-wide matrix, no copies of it), partitioned, gathered for the union."""
        return dense_retrieve(self._score_vectors(*self.user_vectors(queries)), n, exclude, allowed)

    def _score_vectors(self, vectors, biases, scorable) -> np.ndarray:
        """(n, n_items) scores of user vectors (n, d), biases (n,); -inf where not scorable."""
        scores = self.model.score_vectors(vectors, biases)  # (n, n_items)
        scores[~scorable] = -np.inf
        scores[:, ~self.model.item_trained] = -np.inf
        return scores

    def recommend_users(
        self,
        user_idx: np.ndarray,
        k: int,
        seen: sp.spmatrix | None = None,
        allowed: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for many known users in batched matrix products (the batch-recommend path).
        `seen` (n_users, n_items): nonzeros are excluded. Same results as recommend() with
        Query(user_idx=u) and exclude = seen rows; users without learned factors get -1 rows."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        bad = user_idx[(user_idx < 0) | (user_idx >= self.n_users)]
        if bad.size:
            raise IndexError(
                f"user_idx {bad[:5].tolist()} out of range: model has {self.n_users} users"
            )
        if seen is not None:
            seen = sp.csr_matrix(seen)
            if seen.shape != (self.n_users, self.n_items):
                raise ValueError(
                    f"seen: expected shape ({self.n_users}, {self.n_items}), found {seen.shape}"
                )
        out_idx = np.empty((user_idx.size, k), dtype=np.int64)
        out_val = np.empty((user_idx.size, k), dtype=np.float32)
        for start in range(0, user_idx.size, batch_size):
            users = user_idx[start : start + batch_size]
            scores = self.model.score_users(users)  # (batch, n_items)
            scores[~self.model.user_trained[users]] = -np.inf
            scores[:, ~self.model.item_trained] = -np.inf
            if seen is not None:
                block = seen[users]  # (batch, n_items) csr
                rows = np.repeat(np.arange(users.size), np.diff(block.indptr))
                scores[rows, block.indices] = -np.inf
            apply_exclusions(scores, None, allowed)
            out_idx[start : start + users.size], out_val[start : start + users.size] = top_k(
                scores, k
            )
        return out_idx, out_val

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by cosine of item vectors, the item itself excluded."""
        self.check_item(item_idx)
        if self._unit_items is None:
            self._unit_items = normalize_rows(self.model.item_factors)  # (n_items, d)
        scores = (self._unit_items @ self._unit_items[item_idx])[None, :]  # (1, n_items)
        if not self.model.item_trained[item_idx]:
            scores[:] = -np.inf  # its vector is noise: nothing is known about it
        scores[:, ~self.model.item_trained] = -np.inf
        return top_similar(scores, item_idx, k)

    def save(self, directory: Path) -> None:
        self.model.save(directory)

    @classmethod
    def load(cls, directory: Path) -> CollabRecommender:
        meta, arrays = read_model_files(directory)
        kind = meta["kind"]
        if kind not in MODELS:
            raise ValueError(
                f"{Path(directory) / 'collab.json'}: kind {kind!r} unknown, expected one of "
                f"{sorted(MODELS)}"
            )
        config = CollabConfig.model_validate(meta["config"])
        return cls(MODELS[kind].from_arrays(config, arrays))
