"""Ranking stage: the text-neighbour source — how close each item's text vector comes to one of
the history's items, newer items counting more (content-based item-to-item, read through the
text source's item tower).

score(item) = max over the history's newest `history_len` distinct items h of
`recency ** age(h) * cos(v_item, v_h)`, with the text source's item vectors v (age 0: the
newest). The maximum, not a sum or a mean user vector, so a history with several interests
keeps each of them (the `text` source's single user vector averages them), and cold items (text
only, no interactions) score as any other. It has no arrays of its own:
the blend binds it to its `text` source (`bind`), so refitted towers, live-added items and the
FAISS index are those of that source. Writes text_neighbors.json (kind and config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.collab.factors import valid_history
from recsys.config import TextNeighborsConfig
from recsys.ranking.base import Query, Recommender, top_k
from recsys.ranking.content import ContentRecommender
from recsys.ranking.retrieval import (
    Retrieved,
    dense_retrieve,
    first_valid,
    sparse_exclusions,
    union_rows,
)

KIND = "text_neighbors"
_CELLS = 1 << 24  # (n_items x history items) similarity cells computed at once: 64 MiB float32


class TextNeighborsRecommender(Recommender):
    """Max of recency-decayed cosines to the history's items, over the text source's vectors."""

    def __init__(self, config: TextNeighborsConfig, text: ContentRecommender | None = None):
        self.config = config
        self.text = text

    def bind(self, sources: Mapping[str, Recommender]) -> None:
        """Read item vectors (and the index) from the blend's `text` source from now on."""
        text = sources.get("text")
        if not isinstance(text, ContentRecommender):
            raise ValueError(
                f"{KIND}: scores with the text source's item vectors; expected a 'text' source "
                f"(ContentRecommender) beside it, found {type(text).__name__ if text else None}"
            )
        self.text = text

    @property
    def vectors(self) -> np.ndarray:
        if self.text is None:
            raise RuntimeError(f"{KIND}: not bound to a text source (BlendedRanker binds it)")
        return self.text.item_vectors  # (n_items, dim) unit rows; read each time: items grow

    @property
    def n_items(self) -> int:
        return 0 if self.text is None else self.text.n_items

    def history(self, query: Query) -> tuple[np.ndarray, np.ndarray]:
        """The query's newest `history_len` distinct items with a text vector, newest first,
        and their weights recency ** age (age: how many newer interactions; a repeated item
        counts at its newest)."""
        newest_first = valid_history(query.history, self.n_items)[::-1]
        items, age = np.unique(newest_first, return_index=True)
        order = np.argsort(age, kind="stable")
        items, age = items[order], age[order]
        has_text = np.abs(self.vectors[items]).sum(axis=1) > 0  # items without text: zeros
        keep = self.config.history_len
        items, age = items[has_text][:keep], age[has_text][:keep]
        return items, np.power(self.config.recency, age).astype(np.float32)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items); -inf rows for queries without a history item that has a text vector.
        Queries go in chunks whose distinct history items' cosines to the catalog are computed
        once (users share items: on the sample 2,000 histories of 20 hold ~1,500 distinct)."""
        vectors = self.vectors
        n_items = self.n_items
        out = np.full((len(queries), n_items), -np.inf, dtype=np.float32)
        parts = [self.history(q) for q in queries]
        step = max(1, _CELLS // max(n_items, 1))  # distinct history items per matrix product
        row = 0
        while row < len(queries):
            end, distinct = row, set()
            while end < len(queries):  # a query's new items only: no copy of the set per query
                new = set(parts[end][0].tolist()).difference(distinct)
                if end > row and len(distinct) + len(new) > step:
                    break
                distinct.update(new)
                end += 1
            items = np.fromiter(sorted(distinct), dtype=np.int64, count=len(distinct))
            sims = vectors[items] @ vectors.T if items.size else None  # (distinct, n_items)
            for r in range(row, end):
                h, w = parts[r]
                if h.size:
                    rows = sims[np.searchsorted(items, h)]  # (H, n_items)
                    out[r] = (rows * w[:, None]).max(axis=0)
            row = end
        return out

    def score_items(self, parts: Sequence[tuple[np.ndarray, np.ndarray]], items: np.ndarray):
        """Raw scores (q, C) of given items (-1 pads) for each query's history `parts`."""
        vectors = self.vectors
        out = np.full(items.shape, -np.inf, dtype=np.float32)
        for row, (h, w) in enumerate(parts):
            ok = (items[row] >= 0) & (items[row] < self.n_items)
            if h.size and ok.any():
                sims = vectors[items[row, ok]] @ vectors[h].T  # (c, H)
                out[row, ok] = (sims * w).max(axis=1)
        return out

    def retrieve(
        self,
        queries: Sequence[Query],
        n: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> Retrieved:
        """The blend's top-n. Above the text source's exact_max_items: each history item's
        top-n through the text source's index, merged by their exact scores (an item near none
        of the history's items one by one is left out, as a multi-probe search leaves it)."""
        index = self.text.index if self.text is not None else None
        if index is None or self.n_items <= self.text.exact_max_items:
            return dense_retrieve(self.score(queries), n, exclude, allowed)
        parts = [self.history(q) for q in queries]

        def scorer(items: np.ndarray) -> np.ndarray:
            return self.score_items(parts, items)

        found = self._search(parts, n, index)  # (q, m) unfiltered union, -1 padded
        ids, reference = _best(found, scorer(found), n)
        if exclude is not None or allowed is not None:  # the union may hold too few past them
            filtered = sparse_exclusions(found, exclude, allowed)
            ids = union_rows([filtered, self._search(parts, n, index, exclude, allowed)])
            ids = _best(ids, scorer(ids), n)[0]
        return Retrieved(first_valid(ids, n), reference, scorer)

    def _search(self, parts, n, index, exclude=None, allowed=None) -> np.ndarray:
        """Per query, the union of its history items' top-n in the index. (q, m) -1 padded."""
        items = [h for h, _ in parts]
        sizes = np.array([h.size for h in items], dtype=np.int64)
        out = np.full((len(parts), max(n * int(sizes.max(initial=0)), 1)), -1, dtype=np.int64)
        if sizes.sum() == 0:
            return out
        flat = np.concatenate(items)
        per_row = None
        if exclude is not None:
            per_row = [exclude[r] for r, size in enumerate(sizes) for _ in range(size)]
        ids, _ = index.search(self.vectors[flat], n, exclude=per_row, allowed=allowed)
        start = 0
        for row, size in enumerate(sizes):
            got = np.unique(ids[start : start + size])
            got = got[got >= 0]
            out[row, : got.size] = got
            start += size
        return out

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The items whose text vectors are closest (the text source's own answer)."""
        if self.text is None:
            raise RuntimeError(f"{KIND}: not bound to a text source (BlendedRanker binds it)")
        return self.text.similar_items(item_idx, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"kind": KIND, "config": self.config.model_dump(mode="json")}
        (directory / f"{KIND}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TextNeighborsRecommender:
        path = Path(directory) / f"{KIND}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{KIND} model file not found: {path}")
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("kind") != KIND:
            raise ValueError(f"{path}: kind {meta.get('kind')!r}, expected {KIND!r}")
        return cls(TextNeighborsConfig.model_validate(meta["config"]))


def _best(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best (ids, scores) of each row (ids ascending, -1 padded) by score, best first, ties
    to the lower id as top_k breaks them; -1 / -inf pads."""
    cols, best = top_k(np.where(ids >= 0, scores, -np.inf), n)  # columns into ids
    return np.where(cols >= 0, np.take_along_axis(ids, np.maximum(cols, 0), axis=1), -1), best
