"""Test data for the content and blend tests: a known-answer world and the contract recommender.

World: items in topic clusters and users who stay on their topic. Item vectors are cluster centres
plus noise, so the history-mean user tower finds a user's topic; the noise vectors are a source
that knows nothing.
"""

from dataclasses import dataclass

import numpy as np
from contract import contract_matrix

from recsys.index.faiss_index import VectorIndex
from recsys.ranking.base import Query
from recsys.ranking.content import ContentRecommender
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.vectors import normalize_rows


@dataclass(frozen=True)
class World:
    item_vectors: np.ndarray  # (n_items, dim) informative item-tower vectors
    noise_vectors: np.ndarray  # (n_items, dim) vectors unrelated to the topics
    topic: np.ndarray  # (n_items,) topic of each item
    histories: list[np.ndarray]  # per user, item_idx oldest -> newest (all on the user's topic)
    held_out: list[np.ndarray]  # per user, one unseen item of the user's topic

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    def queries(self, known: bool = False) -> list[Query]:
        return [Query(user_idx=u if known else -1, history=h) for u, h in enumerate(self.histories)]


def make_world(
    n_items: int = 240,
    n_topics: int = 8,
    n_users: int = 160,
    dim: int = 16,
    seed: int = 0,
    drift_after: int | None = None,
) -> World:
    """Users stay on their topic; with `drift_after`, users with a longer history move on: their
    held-out item comes from the next topic."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_topics, dim))
    topic = np.arange(n_items) % n_topics
    items = normalize_rows(centres[topic] + 0.6 * rng.normal(size=(n_items, dim)))
    noise = normalize_rows(rng.normal(size=(n_items, dim)))
    histories, held_out = [], []
    for user in range(n_users):
        home = user % n_topics
        pool = rng.permutation(np.flatnonzero(topic == home))
        length = int(rng.choice([1, 3, 5, 10, 20]))  # covers the 1-5 and 6-50 segments
        histories.append(pool[:length].astype(np.int64))
        if drift_after is not None and length > drift_after:
            pool = rng.permutation(np.flatnonzero(topic == (home + 1) % n_topics))
            length = 0
        held_out.append(pool[length : length + 1].astype(np.int64))
    return World(items, noise, topic, histories, held_out)


def contract_content(with_index: bool = False) -> ContentRecommender:
    """Seeded item vectors over the contract catalog; known users = mean of their items."""
    matrix = contract_matrix()
    items = normalize_rows(np.random.default_rng(0).normal(size=(matrix.shape[1], 8)))
    users = normalize_rows(matrix @ items)  # (n_users, dim) history means
    index = VectorIndex.build(items) if with_index else None
    return ContentRecommender(items, HistoryMeanEncoder(), index, users, exact_max_items=8)


def text_and_noise(world: World) -> dict[str, ContentRecommender]:
    """Two content sources: "text" over the world's topic vectors, "collab" over pure noise."""
    return {
        "text": ContentRecommender(world.item_vectors, HistoryMeanEncoder()),
        "collab": ContentRecommender(world.noise_vectors, HistoryMeanEncoder()),  # pure noise
    }
