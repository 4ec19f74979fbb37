"""Errors from the model stack: a RequestError (what the client asked cannot be answered) is a
4xx naming the problem; any other exception is the server's fault, a 500 — never a 422."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from blend_world import make_world

from recsys.config import BlendConfig, ServingConfig
from recsys.ids import IdMap
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.content import ContentRecommender
from recsys.ranking.model import RecommenderModel
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.schema import ITEM_ID, ITEM_IDX
from recsys.serving.app import create_app, start_holder


def _broken_encoder(queries, item_vectors):
    """A user encoder with a bug: one column too many."""
    return np.ones((len(queries), item_vectors.shape[1] + 1), dtype=np.float32)


def _model(user_encoder) -> RecommenderModel:
    """A bundle's model in memory over the blend world: text (history mean) + popularity."""
    world = make_world(n_users=20)
    rows = np.repeat(np.arange(len(world.histories)), [h.size for h in world.histories])
    matrix = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, np.concatenate(world.histories))),
        shape=(len(world.histories), world.n_items),
    )
    config = BlendConfig(sources=["text", "popularity"])
    sources = {
        "text": ContentRecommender(world.item_vectors, user_encoder),
        "popularity": PopularityRecommender.fit(matrix),
    }
    weights = SegmentWeights.uniform(config.sources, config.segment_bounds)
    items = pl.DataFrame(
        {
            ITEM_IDX: np.arange(world.n_items, dtype=np.int32),
            ITEM_ID: [f"i{i}" for i in range(world.n_items)],
            "genre": [f"topic {t}" for t in world.topic],
        }
    )
    no_users = (IdMap([]), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    ranker = BlendedRanker(sources, weights, config)
    return RecommenderModel(ranker, items, *no_users, {"version": "v1"})


@pytest.fixture
def client(tmp_path):
    def make(user_encoder):
        workdir = tmp_path / "var"
        workdir.mkdir(exist_ok=True)
        (workdir / "CURRENT").write_text("v1\n")
        # the holder serves only published versions; the model itself comes from `loader`
        (workdir / "bundles" / "v1").mkdir(parents=True, exist_ok=True)
        (workdir / "bundles" / "v1" / "manifest.json").write_text('{"version": "v1"}')
        model = _model(user_encoder)
        app = create_app(ServingConfig(poll_seconds=0), workdir, loader=lambda path: model)
        start_holder(app, load_now=True, watch=False)
        return app.test_client()

    return make


def test_a_request_error_is_a_422_naming_the_problem(client):
    api = client(HistoryMeanEncoder())
    answer = api.post("/v1/recommendations", json={"item_ids": ["i3"], "filters": ["colour:red"]})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json() == {
        "error": "validation_error",
        "detail": "unknown filter field 'colour'; expected one of ['genre']",
    }
    good = api.post("/v1/recommendations", json={"item_ids": ["i3"], "filters": ["genre:topic"]})
    assert good.status_code == 200 and good.get_json()["items"]


def test_a_bug_in_the_model_stack_is_a_500_not_a_client_error(client):
    api = client(_broken_encoder)
    answer = api.post("/v1/recommendations", json={"item_ids": ["i3", "i11"]})
    assert answer.status_code == 500, answer.get_json()
    assert answer.get_json() == {
        "error": "internal_error",
        "detail": "ValueError: see the server log",
    }
