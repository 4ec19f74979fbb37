"""Ranking stage: the blended ranker — candidates from all sources, per-segment weights, cold start.

Reads the source recommenders (recsys.sources: text, collab, popularity), SegmentWeights and
BlendConfig; writes blend.json, weights.json and one sub-directory per source. The cold-start
chain is explicit (Gorse-style): known user -> full blend; unknown user with item ids and/or
profile text -> the sources that can use what is given (recsys.sources says which); nothing at
all -> popularity. Every result names its path.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.bundle_arrays import load_npy
from recsys.config import BlendConfig
from recsys.errors import RequestError
from recsys.ranking.base import Query, Recommender, top_k
from recsys.ranking.candidates import CandidateScores, blend_scores, build_candidates
from recsys.ranking.explain import explain_with_history
from recsys.ranking.retrieval import retrieve_candidates
from recsys.ranking.segments import SegmentWeights, segment_labels, segment_of
from recsys.sources import (
    FALLBACK,
    PATH_BOTH,
    PATH_HISTORY,
    PATH_KNOWN,
    PATH_POPULARITY,
    PATH_PROFILE,
    serves,
)

_BATCH_CELLS = 1 << 22  # queries per batch x n_items: bounds the dense score matrices
_ALLOWED_MODULES = ("recsys.ranking.",)  # load() imports source classes only from here
RETRIEVAL_ENV = "RECSYS_RETRIEVAL"  # 0: dense candidates at any catalog size


def retrieval_enabled() -> bool:
    """RECSYS_RETRIEVAL=0 keeps large catalogs on the dense path (to compare, or fall back)."""
    value = os.environ.get(RETRIEVAL_ENV, "1").strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(
            f"{RETRIEVAL_ENV}: expected 1/0 (or true/false, yes/no, on/off), found {value!r}"
        )
    return value in ("1", "true", "yes", "on")


def query_path(query: Query) -> str:
    """The cold-start path a query takes, from what it carries."""
    if query.is_known:
        return PATH_KNOWN
    has_history = np.asarray(query.history).size > 0
    has_profile = bool(query.profile_text and query.profile_text.strip())
    if has_history and has_profile:
        return PATH_BOTH
    if has_history:
        return PATH_HISTORY
    return PATH_PROFILE if has_profile else PATH_POPULARITY


@dataclass(frozen=True)
class BlendResult:
    """recommend_detailed output; arrays are (n, k) and padded with -1 / -inf / NaN."""

    item_idx: np.ndarray  # (n, k) int64
    score: np.ndarray  # (n, k) float32 blended score
    source_scores: dict[str, np.ndarray]  # name -> (n, k) float32 raw score, NaN = not used
    weights: dict[str, np.ndarray]  # name -> (n,) float32 weight the source had for the query
    path: list[str]  # per query: known | history | profile | history+profile | popularity
    segment: list[str]  # per query: history-length segment label
    because: np.ndarray | None = None  # (n, k) int64 history item_idx that supports it, -1 none
    because_similarity: np.ndarray | None = None  # (n, k) float32 cosine, NaN where none

    def rows(self) -> list[list[dict[str, Any]]]:
        """Per query, one JSON-ready dict per result (item_idx, score, sources, because)."""
        out = []
        for q in range(self.item_idx.shape[0]):
            results = []
            for j in np.flatnonzero(self.item_idx[q] >= 0):
                entry: dict[str, Any] = {
                    "item_idx": int(self.item_idx[q, j]),
                    "score": float(self.score[q, j]),
                    "sources": {s: _num(v[q, j]) for s, v in self.source_scores.items()},
                }
                if self.because is not None:
                    b = int(self.because[q, j])
                    entry["because"] = None if b < 0 else b
                    entry["because_similarity"] = _num(self.because_similarity[q, j])
                results.append(entry)
            out.append(results)
        return out


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class BlendedRanker(Recommender):
    """Blend of source recommenders with weights per history-length segment.

    `user_history_len` (n_users,) gives known users' history lengths when their queries carry no
    history; otherwise the segment is len(query.history).
    """

    def __init__(
        self,
        sources: dict[str, Recommender],
        weights: SegmentWeights,
        config: BlendConfig,
        user_history_len: np.ndarray | None = None,
    ):
        if set(sources) != set(config.sources):
            raise ValueError(
                f"BlendedRanker: config.sources is {config.sources} but sources given are "
                f"{sorted(sources)}; they must name the same recommenders"
            )
        if list(weights.bounds) != list(config.segment_bounds):
            raise ValueError(
                f"BlendedRanker: weights are for segment bounds {weights.bounds}, "
                f"config has {config.segment_bounds}"
            )
        self.names = list(config.sources)
        self.sources = dict(sources)
        for source in self.sources.values():  # sources that read another one's arrays
            source.bind(self.sources)
        self.weights = weights
        self.config = config
        self.user_history_len = None if user_history_len is None else np.asarray(user_history_len)

    @property
    def n_items(self) -> int:
        # A text source may know items the others do not yet (added with text only).
        return max(source.n_items for source in self.sources.values())

    def segments(self, queries: Sequence[Query]) -> np.ndarray:
        """Segment number of each query (index into segment_labels). (n,) int64."""
        lengths = np.array([np.asarray(q.history).size for q in queries], dtype=np.int64)
        known = self.user_history_len
        if known is not None:
            for row, q in enumerate(queries):
                if 0 <= q.user_idx < known.size:
                    lengths[row] = max(lengths[row], int(known[q.user_idx]))
        return segment_of(lengths, self.config.segment_bounds)

    @property
    def retrieves(self) -> bool:
        """Does candidates() take each source's own top-N (recsys.ranking.retrieval) instead of
        scoring the whole catalog? Yes once n_items passes a source's `exact_max_items` (the
        text source's index.exact_max_items: the catalog size its index searches above)."""
        limits = [getattr(s, "exact_max_items", None) for s in self.sources.values()]
        limits = [int(limit) for limit in limits if limit is not None]
        return bool(limits) and self.n_items > min(limits) and retrieval_enabled()

    def candidates(
        self,
        queries: Sequence[Query],
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> CandidateScores:
        """Candidate sets of one batch of queries, each source normalised by its own top-N."""
        n_items = self.n_items
        paths = [query_path(q) for q in queries]
        uses = [[i for i, p in enumerate(paths) if serves(n, p)] for n in self.names]  # sources
        if allowed is not None and np.asarray(allowed).size < n_items:
            allowed = np.pad(np.asarray(allowed, dtype=bool), (0, n_items - np.size(allowed)))
        if self.retrieves:
            sources = [self.sources[name] for name in self.names]
            per_source, method = self.config.candidates_per_source, self.config.normalize
            return retrieve_candidates(sources, uses, queries, per_source, exclude, allowed, method)
        matrices = []
        for name, use in zip(self.names, uses, strict=True):
            scores = np.full((len(queries), n_items), -np.inf, dtype=np.float32)
            if use:
                part = np.asarray(self.sources[name].score([queries[i] for i in use]))
                scores[use, : part.shape[1]] = part  # (n_use, source n_items); newer items -inf
            matrices.append(scores)
        return build_candidates(
            matrices, self.config.candidates_per_source, exclude, allowed, self.config.normalize
        )

    def batches(self, n: int) -> list[slice]:
        """Query slices small enough that the dense (batch, n_items) score matrices stay bounded."""
        step = max(1, _BATCH_CELLS // max(self.n_items, 1))
        return [slice(start, min(start + step, n)) for start in range(0, n, step)]

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items) blended scores on each query's candidates, -inf elsewhere."""
        out = np.full((len(queries), self.n_items), -np.inf, dtype=np.float32)
        for part in self.batches(len(queries)):
            batch = queries[part]
            cands = self.candidates(batch)
            blended, _ = blend_scores(cands, self._weight_rows(batch))
            rows = np.broadcast_to(np.arange(len(batch))[:, None], cands.items.shape)
            ok = cands.valid
            out[part][rows[ok], cands.items[ok]] = blended[ok]
        return out

    def _weight_rows(self, queries: Sequence[Query]) -> np.ndarray:
        return self.weights.matrix(self.segments(queries), self.names)  # (n, S)

    def recommend(
        self,
        queries: Sequence[Query],
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        result = self.recommend_detailed(queries, k, exclude, allowed)
        return result.item_idx, result.score

    def recommend_detailed(
        self,
        queries: Sequence[Query],
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
        explain: bool = False,
    ) -> BlendResult:
        """Top-k with each source's raw score, the path and segment, and optionally the
        history item that most supports each result (needs a text source with item_vectors)."""
        queries = list(queries)
        n = len(queries)
        item_idx = np.full((n, k), -1, dtype=np.int64)
        score = np.full((n, k), -np.inf, dtype=np.float32)
        per_source = {s: np.full((n, k), np.nan, dtype=np.float32) for s in self.names}
        weights = {s: np.zeros(n, dtype=np.float32) for s in self.names}
        paths = [query_path(q) for q in queries]
        for part in self.batches(n):
            batch_exclude = None if exclude is None else list(exclude)[part]
            cands = self.candidates(queries[part], batch_exclude, allowed)
            blended, used = blend_scores(cands, self._weight_rows(queries[part]))  # (b, C), (b, S)
            cols, score[part] = top_k(blended, k)  # (b, k) columns into the candidate set
            safe = np.maximum(cols, 0)
            item_idx[part] = np.where(cols >= 0, np.take_along_axis(cands.items, safe, 1), -1)
            for s, name in enumerate(self.names):
                raw = np.take_along_axis(cands.raw[s], safe, axis=1)  # (b, k)
                raw[(cols < 0) | (used[:, s : s + 1] == 0) | ~np.isfinite(raw)] = np.nan
                per_source[name][part] = raw
                weights[name][part] = used[:, s]
            self._relabel(paths, part, used)
        labels = segment_labels(self.config.segment_bounds)
        segment = [labels[s] for s in self.segments(queries)]
        because = sim = None
        if explain:
            histories = [q.history for q in queries]
            because, sim = explain_with_history(self._explain_vectors(), histories, item_idx)
        return BlendResult(item_idx, score, per_source, weights, paths, segment, because, sim)

    def _relabel(self, paths: list[str], part: slice, used: np.ndarray) -> None:
        """A query only the fallback source (popularity) could serve took the popularity path,
        whatever it carried."""
        if FALLBACK not in self.names:
            return
        others = [s for s, name in enumerate(self.names) if name != FALLBACK]
        pop = self.names.index(FALLBACK)
        only_pop = (used[:, pop] > 0) & ~(used[:, others] > 0).any(axis=1)
        for row in np.flatnonzero(only_pop):
            paths[part.start + row] = PATH_POPULARITY

    @property
    def explainable(self) -> bool:
        """Can recommend_detailed(explain=True) answer: is there a text source with vectors?"""
        return getattr(self.sources.get("text"), "item_vectors", None) is not None

    def _explain_vectors(self) -> np.ndarray:
        vectors = getattr(self.sources.get("text"), "item_vectors", None)
        if vectors is None:
            raise RequestError(
                "explain=True needs a 'text' source with item_vectors (a ContentRecommender); "
                f"sources are {self.names}"
            )
        return vectors

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Item-to-item from the text source when there is one (it covers cold items)."""
        name = "text" if "text" in self.sources else self.names[0]
        return self.sources[name].similar_items(item_idx, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        classes = {}
        for name, source in self.sources.items():
            source.save(directory / name)
            classes[name] = {"module": type(source).__module__, "class": type(source).__name__}
        self.weights.save(directory / "weights.json")
        if self.user_history_len is not None:
            np.save(directory / "user_history_len.npy", self.user_history_len)
        meta = {"config": self.config.model_dump(mode="json"), "sources": classes}
        (directory / "blend.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, user_encoder: Any | None = None) -> BlendedRanker:
        """Load every source from its sub-directory; `user_encoder` re-attaches a custom one."""
        directory = Path(directory)
        meta = json.loads((directory / "blend.json").read_text(encoding="utf-8"))
        sources: dict[str, Recommender] = {}
        for name, where in meta["sources"].items():
            if not where["module"].startswith(_ALLOWED_MODULES):
                raise ValueError(
                    f"{directory / 'blend.json'}: source {name!r} names module "
                    f"{where['module']!r}; expected one under {_ALLOWED_MODULES}"
                )
            klass = getattr(importlib.import_module(where["module"]), where["class"])
            if name == "text" and user_encoder is not None:
                sources[name] = klass.load(directory / name, user_encoder=user_encoder)
            else:
                sources[name] = klass.load(directory / name)
        lengths_path = directory / "user_history_len.npy"
        lengths = load_npy(lengths_path) if lengths_path.is_file() else None
        weights = SegmentWeights.load(directory / "weights.json")
        return cls(sources, weights, BlendConfig.model_validate(meta["config"]), lengths)
