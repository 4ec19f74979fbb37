"""Ranking stage, serving side: a loaded bundle as one object answering by external ids.

Reads a bundle directory (recsys.bundle): items.parquet, users.json, histories.npz, ranker/.
Serving, batch recommendation and evaluation all go through this class, so they rank identically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.bundle import BundleError, read_manifest
from recsys.bundle_arrays import load_npz
from recsys.bundle_verified import verify_once
from recsys.config import ComputeConfig
from recsys.errors import RequestError
from recsys.ids import IdMap
from recsys.ranking.base import Query
from recsys.ranking.blend import BlendedRanker, BlendResult
from recsys.ranking.topk import TOPK_FILE, PrecomputedTopK, remote_topk
from recsys.schema import ITEM_ID, ITEM_IDX
from recsys.sources import SOURCES

ITEMS_FILE, USERS_FILE, HISTORIES_FILE, RANKER_DIR = (
    "items.parquet",
    "users.json",
    "histories.npz",
    "ranker",
)
# A refitted bundle also holds the ranker the nightly evaluated (its sources fitted on the split's
# training part only): offline evaluation and the gate judge that one, never the refitted ranker,
# which has seen the held-out interactions. Same depth as RANKER_DIR: relative paths still hold.
EVALUATED_RANKER_DIR = "ranker-evaluated"


class RecommenderModel:
    """A verified bundle: the blended ranker plus the id maps, item table and user histories."""

    def __init__(
        self,
        ranker: BlendedRanker,
        items: pl.DataFrame,
        users: IdMap,
        history_indptr: np.ndarray,
        history_items: np.ndarray,
        manifest: dict[str, Any],
        topk: PrecomputedTopK | None = None,
    ):
        if topk is not None and topk.source_names != ranker.names:
            raise BundleError(
                f"top-k sources {topk.source_names} differ from the ranker's {ranker.names}"
            )
        self.ranker = ranker
        self.topk = topk
        self.items = items
        self.item_map = IdMap(items[ITEM_ID].to_list())
        self.users = users
        self._indptr = history_indptr  # (n_users + 1,)
        self._history = history_items  # (n_interactions,) item_idx, oldest first per user
        self.manifest = manifest
        self.version: str = manifest.get("version", "")
        self.filter_fields = [c for c in items.columns if c not in (ITEM_ID, ITEM_IDX)]
        self._lowered = {c: items[c].fill_null("").str.to_lowercase() for c in self.filter_fields}

    @classmethod
    def load(
        cls, bundle_dir: Path, verify_files: bool = True, evaluated: bool = False
    ) -> RecommenderModel:
        """Verify every file's sha256 (once per host per bundle) unless told not to, then load.

        evaluated=True (offline evaluation, the gate): the ranker fitted on the split's training
        part when the bundle was refitted on every interaction (EVALUATED_RANKER_DIR), else the
        one ranker it has; no precomputed top-k (those are the served ranker's)."""
        bundle_dir = Path(bundle_dir)
        if verify_files:  # hashed once per host per bundle (recsys.bundle_verified)
            manifest, _ = verify_once(bundle_dir)
        elif (bundle_dir / "manifest.json").is_file():
            manifest = read_manifest(bundle_dir)
        else:  # an unpublished model directory (the nightly evaluates it before publishing)
            manifest = {"version": "candidate"}
        try:
            items = pl.read_parquet(bundle_dir / ITEMS_FILE)
            users = IdMap.load(bundle_dir / USERS_FILE)
            histories = load_npz(bundle_dir / HISTORIES_FILE)  # memory-mapped
            indptr, history = histories["indptr"], histories["indices"]
            held_apart = evaluated and (bundle_dir / EVALUATED_RANKER_DIR).is_dir()
            ranker = BlendedRanker.load(
                bundle_dir / (EVALUATED_RANKER_DIR if held_apart else RANKER_DIR)
            )
            topk = None
            if (bundle_dir / TOPK_FILE).is_file() and not held_apart:
                topk = PrecomputedTopK.load(bundle_dir / TOPK_FILE, len(users))
        except BundleError:
            raise
        except Exception as exc:  # any unreadable part makes the whole bundle unusable
            raise BundleError(f"{bundle_dir}: cannot load: {type(exc).__name__}: {exc}") from exc
        if len(indptr) != len(users) + 1:
            raise BundleError(
                f"{bundle_dir / HISTORIES_FILE}: {len(indptr) - 1} histories for {len(users)} users"
            )
        return cls(ranker, items, users, indptr, history, manifest, topk)

    def warm_up(self) -> None:
        """One request of each kind, so the first real request pays no lazy initialisation."""
        first_user = self.users.to_id(0) if len(self.users) else None
        self.recommend(user_id=first_user, k=5, explain=self.ranker.explainable)
        self.recommend(k=5)
        self.recommend(profile_text="warm up", k=5)  # the text path (tokenizer, BERT) too
        if len(self.item_map):
            self.similar(self.item_map.to_id(0), k=5)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.item_map

    def history(self, user_idx: int) -> np.ndarray:
        return self._history[self._indptr[user_idx] : self._indptr[user_idx + 1]]

    def allowed_mask(
        self,
        filters: Sequence[tuple[str, str]],
        overrides: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> np.ndarray | None:
        """Items whose `field` contains `value` (case-insensitive), all filters AND-ed.
        `overrides`: item id -> its columns as patched since the bundle (the live store's PATCH);
        those items are judged by them (a column they lack is empty)."""
        if not filters:
            return None
        mask = np.ones(len(self.item_map), dtype=bool)
        for field, value in filters:
            if field not in self._lowered:
                raise RequestError(
                    f"unknown filter field {field!r}; expected one of {self.filter_fields}"
                )
            hit = self._lowered[field].str.contains(value.lower(), literal=True).to_numpy()
            mask &= hit
        for item_id, columns in (overrides or {}).items():
            idx = self.item_map.get_idx(item_id)
            if idx >= 0:
                mask[idx] = all(
                    value.lower() in str(columns.get(field) or "").lower()
                    for field, value in filters
                )
        return mask

    def query_for(
        self, user_id: str | None, item_ids: Sequence[str], profile_text: str | None
    ) -> tuple[Query, list[str]]:
        """The Query for a request and the item ids it named that the bundle does not know."""
        unknown = [i for i in item_ids if i not in self.item_map]
        recent = np.array([self.item_map.to_idx(i) for i in item_ids if i in self.item_map])
        user_idx = self.users.get_idx(user_id) if user_id is not None else -1
        if user_idx >= 0:
            history = self.history(user_idx)
            if recent.size:
                history = np.concatenate([history, recent.astype(np.int64)])
            return Query(user_idx, history.astype(np.int64), profile_text), unknown
        return Query(-1, recent.astype(np.int64), profile_text), unknown

    def recommend(
        self,
        *,
        user_id: str | None = None,
        item_ids: Sequence[str] = (),
        profile_text: str | None = None,
        k: int = 10,
        exclude: Sequence[str] = (),
        filters: Sequence[tuple[str, str]] = (),
        explain: bool = False,
        field_overrides: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> dict[str, Any]:
        """Top-k for one request; seen and excluded items are never returned. `field_overrides`:
        patched item columns the filters read instead of the bundle's (allowed_mask).

        A known user asking for no more than the precomputed K, with nothing else (no recent
        items, profile text, exclusions, filters or explanations), is answered from the top-K
        ranked at publish by this same ranker; every other request is ranked live."""
        plain = not (item_ids or profile_text is not None or exclude or filters or explain)
        if plain and self.topk is not None and user_id is not None and k <= self.topk.k:
            user_idx = self.users.get_idx(user_id)
            if user_idx >= 0:
                idx, score, sources, path = self.topk.row(user_idx, k)
                items = self._items(idx, score, sources)
                return {
                    "path": path,
                    "items": items,
                    "unknown_item_ids": [],
                    "ranked": "precomputed",
                }
        query, unknown = self.query_for(user_id, item_ids, profile_text)
        excluded = np.concatenate([query.history, self.item_map.to_indices(exclude)]).astype(
            np.int64
        )
        result = self.ranker.recommend_detailed(
            [query], k, [excluded], self.allowed_mask(filters, field_overrides), explain=explain
        )
        return self._response(result, explain, unknown)

    def _response(self, result: BlendResult, explain: bool, unknown: list[str]) -> dict[str, Any]:
        because = result.because[0] if explain and result.because is not None else None
        sources = {name: scores[0] for name, scores in result.source_scores.items()}
        items = self._items(result.item_idx[0], result.score[0], sources, because, explain)
        return {
            "path": result.path[0],
            "items": items,
            "unknown_item_ids": unknown,
            "ranked": "live",
        }

    def _items(
        self,
        idx: np.ndarray,
        score: np.ndarray,
        sources: Mapping[str, np.ndarray],
        because: np.ndarray | None = None,
        explain: bool = False,
    ) -> list[dict[str, Any]]:
        """One query's results as answer items (item_id, score, sources: every name of SOURCES,
        None where not used or not finite; because with `explain`), from (k,) rows with -1 pads;
        converted a row at a time, not an element at a time (the hot path of every answer)."""
        keep = np.flatnonzero(idx >= 0)
        ids = self.item_map.to_ids(idx[keep])
        scores = score[keep].astype(np.float64).tolist()
        absent = [None] * len(keep)
        columns = [
            _finite_or_none(sources[name][keep]) if name in sources else absent for name in SOURCES
        ]
        items = [
            {"item_id": item_id, "score": value, "sources": dict(zip(SOURCES, row, strict=True))}
            for item_id, value, row in zip(ids, scores, zip(*columns, strict=True), strict=True)
        ]
        if explain:
            why = [-1] * len(keep) if because is None else because[keep].tolist()
            for item, b in zip(items, why, strict=True):
                item["because"] = None if b < 0 else self.item_map.to_id(b)
        return items

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        """Item-to-item; KeyError for an unknown item id."""
        idx, scores = self.ranker.similar_items(self.item_map.to_idx(item_id), k)
        return [
            {"item_id": self.item_map.to_id(i), "score": float(s)}
            for i, s in zip(idx, scores, strict=True)
            if i >= 0
        ]

    def rank_users(
        self,
        user_ids: Sequence[str],
        k: int,
        histories: Sequence[Sequence[str]] | None = None,
        batch: int = 1024,
    ) -> pl.DataFrame:
        """Top-k for many users at once (`recsys recommend`, offline evaluation): a frame of
        user_id, rank (1 = best), item_id, score. Each user's history is the query and is
        excluded: the bundle's stored history, or `histories` (item ids, oldest first; ids the
        bundle does not know are dropped) when given. Unknown users take the cold-start path."""
        frames = []
        for start in range(0, len(user_ids), batch):
            part = list(user_ids[start : start + batch])
            given = [None] * len(part) if histories is None else histories[start : start + batch]
            queries = [self._batch_query(u, h) for u, h in zip(part, given, strict=True)]
            item_idx, scores = self.ranker.recommend(queries, k, [q.history for q in queries])
            valid = item_idx >= 0  # (b, k): -1 pads only at the end of a row
            rows, ranks = np.nonzero(valid)
            frames.append(
                pl.DataFrame(
                    {
                        "user_id": [part[r] for r in rows],
                        "rank": (ranks + 1).astype(np.int32),
                        "item_id": self.item_map.to_ids(item_idx[valid]),
                        "score": scores[valid].astype(np.float32),
                    }
                )
            )
        schema = {"user_id": pl.Utf8, "rank": pl.Int32, "item_id": pl.Utf8, "score": pl.Float32}
        return pl.concat(frames) if frames else pl.DataFrame(schema=schema)

    def _batch_query(self, user_id: str, history: Sequence[str] | None) -> Query:
        user_idx = self.users.get_idx(user_id)
        if history is not None:
            idx = self.item_map.to_indices(history)
            return Query(user_idx, idx[idx >= 0].astype(np.int64))
        stored = self.history(user_idx) if user_idx >= 0 else np.zeros(0, np.int64)
        return Query(user_idx, stored.astype(np.int64))


def write_model_files(
    directory: Path,
    ranker: BlendedRanker,
    items: pl.DataFrame,
    users: IdMap,
    histories: list[np.ndarray],
    precompute_k: int = 0,
    compute: ComputeConfig | None = None,
) -> None:
    """The serving part of a bundle (the publisher adds the manifest); with precompute_k > 0,
    every user's top-k too (topk.npz), over user batches on Ray when compute says so."""
    directory = Path(directory)
    items.write_parquet(directory / ITEMS_FILE)
    users.save(directory / USERS_FILE)
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(h) for h in histories])
    flat = np.concatenate(histories) if histories else np.zeros(0)
    np.savez(directory / HISTORIES_FILE, indptr=indptr, indices=flat.astype(np.int64))
    ranker.save(directory / RANKER_DIR)
    if precompute_k > 0 and compute is not None and compute.backend == "ray":
        files = (directory / RANKER_DIR, directory / HISTORIES_FILE)  # what the actors load
        topk = remote_topk(*files, ranker.names, len(histories), precompute_k, compute)
        topk.save(directory / TOPK_FILE)
    elif precompute_k > 0:
        PrecomputedTopK.compute(ranker, histories, precompute_k).save(directory / TOPK_FILE)
    (directory / "model.json").write_text(json.dumps({"sources": ranker.names}), encoding="utf-8")


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    """(k,) scores as Python floats, None where NaN or infinite (JSON has neither)."""
    finite = np.isfinite(values).tolist()
    floats = values.astype(np.float64).tolist()
    return [v if f else None for v, f in zip(floats, finite, strict=True)]
