"""Ranking stage: the sequence recommender — SASRec's scores of the item that comes after a
history (recsys.ranking.sasrec), an item-id source that reads order and position.

Reads and writes sequence.pt (the network's weights), sequence.npz (which items had
interactions) and sequence.json (kind, the network's settings, how its fit went); fitted by
recsys.training.sequence. Known and unknown users are served alike from their item history (the
newest max_len items). Items without interactions score -inf (cold items are the text source's),
as does a query without a history item that had any.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.bundle_arrays import load_npz
from recsys.collab.factors import valid_history
from recsys.ranking.base import Query, Recommender, top_similar
from recsys.ranking.sasrec import SASRec, SASRecConfig, next_item_scores

KIND = "sequence"


class SequenceRecommender(Recommender):
    """score(item) = SASRec's logit of the item following the query's history."""

    KIND = KIND

    def __init__(self, model: SASRec, trained: np.ndarray, fit: dict[str, Any] | None = None):
        self.model = model.cpu().eval()
        self.trained = np.asarray(trained, dtype=bool)  # (n_items,) had interactions
        self.fit = dict(fit or {})  # how training went: epochs, best epoch, seconds
        n_items = model.items.num_embeddings - 1
        if self.trained.size != n_items:
            raise ValueError(
                f"trained: expected {n_items} flags (one per item of the network), "
                f"found {self.trained.size}"
            )

    @property
    def n_items(self) -> int:
        return self.trained.size

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """(n, n_items) next-item logits; -inf for items without interactions and for queries
        without a history item that had any."""
        if not queries:
            return np.zeros((0, self.n_items), dtype=np.float32)
        histories = [valid_history(q.history, self.n_items) for q in queries]
        usable = np.array([bool(self.trained[h].any()) for h in histories], dtype=bool)
        scores = next_item_scores(self.model, histories)  # (n, n_items)
        scores[~usable] = -np.inf
        scores[:, ~self.trained] = -np.inf
        return scores

    def similar_items(self, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The items most likely to come right after `item_idx` alone, itself excluded."""
        self.check_item(item_idx)
        scores = self.score([Query(-1, np.array([item_idx]))])
        return top_similar(scores, item_idx, k)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / f"{KIND}.pt")
        np.savez(directory / f"{KIND}.npz", trained=self.trained)
        meta = {
            "kind": KIND,
            "n_items": self.n_items,
            "network": asdict(self.model.config),
            "fit": self.fit,
        }
        (directory / f"{KIND}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> SequenceRecommender:
        directory = Path(directory)
        paths = [directory / f"{KIND}.{suffix}" for suffix in ("json", "npz", "pt")]
        for needed in paths:
            if not needed.is_file():
                raise FileNotFoundError(f"{KIND} model file not found: {needed}")
        meta = json.loads(paths[0].read_text(encoding="utf-8"))
        if meta.get("kind") != KIND:
            raise ValueError(f"{paths[0]}: kind {meta.get('kind')!r}, expected {KIND!r}")
        trained = load_npz(paths[1])["trained"]
        model = SASRec(int(meta["n_items"]), SASRecConfig(**meta["network"]))
        state = torch.load(paths[2], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return cls(model, trained, meta.get("fit"))
