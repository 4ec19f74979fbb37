"""RecommenderModel, the bundle as serving and the batch jobs see it: one batch-ranking method
(stored or given histories) that ranks as single requests do, and request errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from blend_world import make_world

from recsys.config import BlendConfig
from recsys.errors import RequestError
from recsys.ids import IdMap
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.content import ContentRecommender
from recsys.ranking.model import RecommenderModel, write_model_files
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.schema import ITEM_ID, ITEM_IDX

CONFIG = BlendConfig(sources=["text", "popularity"], candidates_per_source=40)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A bundle's model directory written and loaded like the nightly's, over the blend world:
    history-mean text vectors + popularity, users u0.. with the world's histories."""
    world = make_world(n_users=40)
    counts = np.zeros((len(world.histories), world.n_items), dtype=np.float32)
    for user, history in enumerate(world.histories):
        counts[user, history] = 1.0
    sources = {
        "text": ContentRecommender(world.item_vectors, HistoryMeanEncoder()),
        "popularity": PopularityRecommender.fit(sp.csr_matrix(counts)),
    }
    weights = SegmentWeights.fixed({"text": 0.7, "popularity": 0.3}, CONFIG.segment_bounds)
    ranker = BlendedRanker(sources, weights, CONFIG)
    items = pl.DataFrame(
        {
            ITEM_IDX: np.arange(world.n_items, dtype=np.int32),
            ITEM_ID: [f"i{i}" for i in range(world.n_items)],
            "genre": [f"topic {t}" for t in world.topic],
        }
    )
    users = IdMap([f"u{u}" for u in range(len(world.histories))])
    directory = tmp_path_factory.mktemp("model")
    write_model_files(directory, ranker, items, users, world.histories)
    return RecommenderModel.load(directory, verify_files=False)


def _ids(response: dict) -> list[str]:
    return [item["item_id"] for item in response["items"]]


def test_rank_users_from_stored_histories_ranks_as_single_requests(model):
    users = ["u0", "u7", "u21", "nobody"]
    frame = model.rank_users(users, 5)
    assert frame.columns == ["user_id", "rank", "item_id", "score"]
    for user in users:
        rows = frame.filter(pl.col("user_id") == user).sort("rank")
        assert rows["rank"].to_list() == list(range(1, rows.height + 1))
        single = model.recommend(user_id=user, k=5)
        assert rows["item_id"].to_list() == _ids(single)
        np.testing.assert_allclose(
            rows["score"].to_numpy(), [it["score"] for it in single["items"]], atol=1e-5
        )
    seen = set(model.item_map.to_ids(model.history(0)))
    assert not seen & set(frame.filter(pl.col("user_id") == "u0")["item_id"])  # excluded


def test_rank_users_from_given_histories(model):
    """Evaluation's shape: the given history (unknown ids dropped) is the query and excluded."""
    history = ["i3", "i11", "not-an-item"]
    frame = model.rank_users(["nobody", "u1"], 4, [history, []])
    anonymous = model.recommend(item_ids=history[:2], k=4)
    assert frame.filter(pl.col("user_id") == "nobody")["item_id"].to_list() == _ids(anonymous)
    assert not {"i3", "i11"} & set(frame["item_id"].to_list()[:4])
    empty = model.rank_users([], 3)
    assert empty.height == 0 and empty.columns == ["user_id", "rank", "item_id", "score"]


def test_a_filter_on_an_unknown_field_is_a_request_error(model):
    with pytest.raises(RequestError, match="unknown filter field 'colour'"):
        model.recommend(user_id="u0", k=3, filters=[("colour", "red")])
    kept = model.recommend(user_id="u0", k=3, filters=[("genre", "topic 3")])["items"]
    assert kept and all(int(it["item_id"][1:]) % 8 == 3 for it in kept)
