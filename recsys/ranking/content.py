"""Ranking stage: the content recommender — item-tower vectors + a user encoder (+ FAISS) -> top-k.

Reads item vectors (n_items, dim), optional precomputed user vectors, an optional per-item bias
(recsys.ranking.prior) and an optional VectorIndex; writes item_vectors.npy, user_vectors.npy
(+ user_keys.npy), item_bias.npy, content.json (and items.faiss when there is an index).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recsys.bundle_arrays import load_npy, mmap_enabled
from recsys.ranking.base import Query, Recommender, top_k, top_similar
from recsys.ranking.retrieval import Retrieved, dense_retrieve
from recsys.ranking.user_vectors import UserEncoder, encoder_from_spec, history_key
from recsys.vectors import check_unit_rows, normalize_rows

_META = "content.json"
_INDEX = "items.faiss"
_BIAS = "item_bias.npy"


class ContentRecommender(Recommender):
    """Scores = user vector . item vectors (+ item_bias). Cold items are reachable: only their
    text is needed. `item_bias` (n_items,), in cosine units, is added to every user's score of
    an item (the text-predicted popularity prior of never-interacted items; 0 elsewhere);
    similar_items() is plain cosine.

    Known users (0 <= user_idx < len(known_user_vectors), non-zero vector) use their precomputed
    vector; everyone else is encoded from history/profile by `user_encoder(queries, item_vectors)`.
    With `known_user_keys` (n_users,) uint64 = history_key() of the history each vector was
    encoded from, a precomputed vector is used only for a query with that exact history and no
    profile text of its own: a query that adds recent items, or evaluates an older history, is
    encoded afresh. Without keys every known user's vector is used as is.
    A query with nothing to encode scores -inf everywhere (this source cannot score it).
    recommend() goes through `index` when the catalog is larger than `exact_max_items`.
    """

    def __init__(
        self,
        item_vectors: np.ndarray,
        user_encoder: UserEncoder,
        index: Any | None = None,
        known_user_vectors: np.ndarray | None = None,
        exact_max_items: int = 100_000,
        known_user_keys: np.ndarray | None = None,
        item_bias: np.ndarray | None = None,
        normalized: bool = False,
    ):
        item_vectors = np.asarray(item_vectors, dtype=np.float32)
        if item_vectors.ndim != 2:
            raise ValueError(f"item_vectors: expected (n_items, dim), found {item_vectors.shape}")
        # normalized=True (load): the vectors were saved unit-length and are used as they are
        # (a memory map stays a map); else normalised into a new array.
        self.item_vectors = (
            check_unit_rows(item_vectors, "item_vectors")
            if normalized
            else normalize_rows(item_vectors)
        )  # (n_items, dim)
        self.user_encoder = user_encoder
        self.index = index
        self.exact_max_items = int(exact_max_items)
        self.known_user_vectors: np.ndarray | None = None
        self.known_user_keys: np.ndarray | None = None
        self.set_known_users(known_user_vectors, known_user_keys, normalized)
        self.item_bias: np.ndarray | None = None
        self._biased = np.zeros(0, dtype=np.int64)  # item_idx with a non-zero bias
        self.set_item_bias(item_bias)

    def set_item_bias(self, bias: np.ndarray | None) -> None:
        """Per-item additive score (n_items,) float32, or None (all zero)."""
        if bias is None or not np.any(bias):
            self.item_bias, self._biased = None, np.zeros(0, dtype=np.int64)
            return
        bias = np.asarray(bias, dtype=np.float32)
        if bias.shape != (self.n_items,) or not np.isfinite(bias).all():
            raise ValueError(
                f"item_bias: expected ({self.n_items},) finite values, one per item, "
                f"found shape {bias.shape}"
            )
        self.item_bias, self._biased = bias, np.flatnonzero(bias)

    def set_known_users(
        self, vectors: np.ndarray | None, keys: np.ndarray | None, normalized: bool = False
    ) -> None:
        """Precomputed user vectors (n_users, dim), with the history_key of each (or None);
        normalized=True: already unit rows, kept as they are (see __init__)."""
        if vectors is None:
            self.known_user_vectors, self.known_user_keys = None, None
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(
                f"known_user_vectors: expected (n_users, {self.dim}) to match item_vectors, "
                f"found shape {vectors.shape}"
            )
        if keys is not None:
            keys = np.asarray(keys, dtype=np.uint64)
            if keys.shape != (vectors.shape[0],):
                raise ValueError(
                    f"known_user_keys: expected ({vectors.shape[0]},) one per known user vector, "
                    f"found shape {keys.shape}"
                )
        unit = (
            check_unit_rows(vectors, "known_user_vectors")
            if normalized
            else normalize_rows(vectors)
        )
        self.known_user_vectors = unit
        self.known_user_keys = keys

    def stored_user_vector(self, user_idx: int, history: np.ndarray) -> np.ndarray | None:
        """(dim,) the precomputed vector of a known user whose query is their stored history
        alone; None when there is none for that history (the caller encodes instead)."""
        return self._precomputed(Query(user_idx, history, None))

    def _precomputed(self, query: Query) -> np.ndarray | None:
        known = self.known_user_vectors
        if known is None or not 0 <= query.user_idx < known.shape[0]:
            return None
        if self.known_user_keys is not None and (
            query.profile_text is not None
            or history_key(query.history) != self.known_user_keys[query.user_idx]
        ):
            return None
        return known[query.user_idx]

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.item_vectors.shape[1]

    def user_vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, dim) normalised user vectors; zero rows for queries with nothing to encode."""
        out = np.zeros((len(queries), self.dim), dtype=np.float32)
        to_encode: list[int] = []
        for row, query in enumerate(queries):
            vector = self._precomputed(query)
            if vector is not None:
                out[row] = vector
            if not out[row].any():  # unknown, or known without a precomputed vector
                to_encode.append(row)
        if to_encode:
            encoded = self.user_encoder([queries[r] for r in to_encode], self.item_vectors)
            encoded = np.asarray(encoded, dtype=np.float32)
            if encoded.shape != (len(to_encode), self.dim):
                raise ValueError(
                    f"user_encoder returned shape {encoded.shape}, "
                    f"expected ({len(to_encode)}, {self.dim})"
                )
            out[to_encode] = normalize_rows(encoded)
        return out

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self._score_users(self.user_vectors(queries))

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """(n, n_items) scores of user vectors (n, dim); -inf rows for zero vectors."""
        scores = users @ self.item_vectors.T  # (n, n_items) cosine
        if self.item_bias is not None:
            scores += self.item_bias[None, :]
        scores[~users.any(axis=1)] = -np.inf  # nothing to encode: this source cannot score
        return scores.astype(np.float32, copy=False)

    def recommend(
        self,
        queries: Sequence[Query],
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None or self.n_items <= self.exact_max_items:
            return super().recommend(queries, k, exclude, allowed)
        return self._search(self.user_vectors(queries), k, exclude, allowed)

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """The blend's top-n: through the index above exact_max_items (users encoded once for
        the searches and the scorer), the dense scores at or below it."""
        users = self.user_vectors(queries)  # (q, dim)
        if self.index is None or self.n_items <= self.exact_max_items:
            return dense_retrieve(self._score_users(users), n, exclude, allowed)
        scorer = partial(self.score_items, users)
        top, _ = self._search(users, n, None, None)  # (q, n) unfiltered
        reference = scorer(top)  # exact scores: an IVF-PQ index's own are approximate
        if exclude is not None or allowed is not None:  # the index over-fetches past them
            top, _ = self._search(users, n, exclude, allowed)
        return Retrieved(top, reference, scorer)

    def score_items(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores (q, C) of user vectors (q, dim) on items (q, C) (cosine + item_bias, as
        score()); -inf where items are -1 / unknown or the user vector is zero."""
        ok = (items >= 0) & (items < self.n_items)
        safe = np.where(ok, items, 0)
        vectors = np.asarray(self.item_vectors[safe.ravel()]).reshape(*safe.shape, self.dim)
        raw = np.matmul(vectors, users[:, :, None])[:, :, 0]  # (q, C) cosine
        if self.item_bias is not None:
            raw += self.item_bias[safe]
        raw[~ok] = -np.inf
        raw[~users.any(axis=1)] = -np.inf
        return raw.astype(np.float32, copy=False)

    def _search(self, users, k, exclude, allowed) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of user vectors (n, dim) through the index (biased items scored exactly)."""
        if self.item_bias is None:
            ids, scores = self.index.search(users, k, exclude=exclude, allowed=allowed)
        else:  # the index ranks the unbiased items; the few biased ones are scored exactly
            mask = (
                np.ones(self.n_items, dtype=bool)
                if allowed is None
                else np.array(allowed, dtype=bool)
            )
            mask[self._biased] = False
            ids, scores = self.index.search(users, k, exclude=exclude, allowed=mask)
            ids, scores = self._merge_biased(users, ids, scores, k, exclude, allowed)
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        empty = ~users.any(axis=1)
        ids[empty], scores[empty] = -1, -np.inf
        return ids, scores

    def _merge_biased(self, users, ids, scores, k, exclude, allowed):
        """Top-k of the index's results (items without a bias) merged with every biased item
        scored exactly (cosine + bias), exclusions and the allow-mask applied to both."""
        biased = self._biased  # (m,)
        exact = users @ self.item_vectors[biased].T + self.item_bias[biased]  # (n, m)
        if allowed is not None:
            exact[:, ~np.asarray(allowed, dtype=bool)[biased]] = -np.inf
        for row, items in enumerate(() if exclude is None else exclude):
            exact[row, np.isin(biased, items)] = -np.inf
        cand_ids = np.concatenate([ids, np.broadcast_to(biased, exact.shape)], axis=1)
        cand = np.concatenate([np.where(ids >= 0, scores, -np.inf), exact], axis=1)
        best, values = top_k(cand.astype(np.float32), k)  # columns of cand
        chosen = np.take_along_axis(cand_ids, np.maximum(best, 0), axis=1)
        return np.where(best >= 0, chosen, -1), values

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.check_item(item_idx)
        scores = (self.item_vectors @ self.item_vectors[item_idx])[None, :]  # (1, n_items) cosine
        if not self.item_vectors[item_idx].any():
            scores[:] = -np.inf
        return top_similar(scores, item_idx, k)

    def add_items(self, vectors: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """Append new items (text-only, embedded by the item tower), with an optional bias (m,)
        each (default 0: ranked as an item of average predicted popularity); returns their
        item_idx (m,)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"add_items: expected (m, {self.dim}), found shape {vectors.shape}")
        added = np.zeros(len(vectors), np.float32) if bias is None else np.asarray(bias, np.float32)
        if added.shape != (len(vectors),):
            raise ValueError(f"add_items: expected bias ({len(vectors)},), found {added.shape}")
        start = self.n_items
        new = normalize_rows(vectors)
        old_bias = np.zeros(start, np.float32) if self.item_bias is None else self.item_bias
        self.item_vectors = np.concatenate([self.item_vectors, new], axis=0)
        self.set_item_bias(np.concatenate([old_bias, added]))
        if self.index is not None:
            self.index.add(new)
        return np.arange(start, self.n_items, dtype=np.int64)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "item_vectors.npy", self.item_vectors)
        if self.known_user_vectors is not None:
            np.save(directory / "user_vectors.npy", self.known_user_vectors)
        if self.known_user_keys is not None:
            np.save(directory / "user_keys.npy", self.known_user_keys)
        if self.item_bias is not None:
            np.save(directory / _BIAS, self.item_bias)
        if self.index is not None:
            self.index.save(directory / _INDEX)
        meta = {
            "n_items": self.n_items,
            "dim": self.dim,
            "exact_max_items": self.exact_max_items,
            "has_index": self.index is not None,
            "user_encoder": _portable_spec(self.user_encoder, directory),
        }
        (directory / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, user_encoder: UserEncoder | None = None) -> ContentRecommender:
        """Load vectors (and index); re-attach `user_encoder`, or rebuild the recorded one."""
        directory = Path(directory)
        meta_path = directory / _META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not found; expected a saved ContentRecommender")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        # memory-mapped (recsys.bundle_arrays): the workers of a host share one copy
        item_vectors = load_npy(directory / "item_vectors.npy")
        if item_vectors.shape != (meta["n_items"], meta["dim"]):
            raise ValueError(
                f"{directory / 'item_vectors.npy'}: expected shape ({meta['n_items']}, "
                f"{meta['dim']}) per {_META}, found {item_vectors.shape}"
            )
        users_path = directory / "user_vectors.npy"
        known = load_npy(users_path) if users_path.is_file() else None
        keys_path = directory / "user_keys.npy"
        keys = load_npy(keys_path) if keys_path.is_file() else None
        bias_path = directory / _BIAS
        bias = load_npy(bias_path) if bias_path.is_file() else None
        if user_encoder is None:
            if meta.get("user_encoder") is None:
                raise ValueError(
                    f"{meta_path}: no user encoder recorded (it was a custom callable); "
                    "pass user_encoder= to ContentRecommender.load"
                )
            user_encoder = encoder_from_spec(meta["user_encoder"], directory)
        index = None
        if meta.get("has_index"):
            from recsys.index.faiss_index import VectorIndex

            index = VectorIndex.load(directory / _INDEX, mmap=mmap_enabled())
        exact_max = meta.get("exact_max_items", 100_000)
        return cls(
            item_vectors,
            user_encoder,
            index,
            known,
            exact_max,
            known_user_keys=keys,
            item_bias=bias,
            normalized=True,  # save() wrote the unit rows this instance was built with
        )


def _portable_spec(user_encoder: Any, directory: Path) -> dict[str, Any] | None:
    """The encoder's spec with any encoder directory made relative to `directory` (relocatable)."""
    spec = getattr(user_encoder, "spec", None)
    if spec is None:
        return None
    spec = dict(spec)
    if "dir" in spec:
        spec["dir"] = os.path.relpath(Path(spec["dir"]).resolve(), directory.resolve())
    return spec
