"""The registry of sources (recsys/sources.py): the config, the blend's path rules, the nightly's
fits, the API response and its schema all follow it; adding a source takes two edits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import typing

import pytest
from support import REPO

from recsys import sources
from recsys.config import BlendConfig
from recsys.pipeline.fit import FRAME_SOURCES
from recsys.ranking.base import Query
from recsys.ranking.blend import query_path
from recsys.serving import schemas


def test_everything_follows_the_registry():
    assert sources.SOURCES == (
        "text",
        "collab",
        "popularity",
        "neighbors",
        "transitions",
        "text_neighbors",
    )
    # a source with default=False is registered everywhere but blended only when asked
    assert BlendConfig().sources == list(sources.DEFAULT_SOURCES)
    assert set(sources.SOURCES) - set(sources.DEFAULT_SOURCES) == {"text_neighbors"}
    field = BlendConfig.model_fields["sources"].annotation
    assert typing.get_args(typing.get_args(field)[0]) == sources.SOURCES
    assert list(schemas.Sources.model_fields) == list(sources.SOURCES)
    assert typing.get_args(schemas.RecommendationPath) == sources.PATHS
    # every source but those built on the encoder's steps is fitted on interactions
    assert set(FRAME_SOURCES) == set(sources.SOURCES) - {"text", "text_neighbors"}


def test_each_path_is_served_by_the_sources_that_can_use_what_it_carries():
    item_sources = {"text", "collab", "popularity", "neighbors", "transitions"}
    served = {
        query_path(q): {s for s in sources.SOURCES if sources.serves(s, query_path(q))}
        for q in (
            Query(3),
            Query(-1, history=[1, 2]),
            Query(-1, profile_text="likes jazz"),
            Query(-1, history=[1], profile_text="likes jazz"),
            Query(-1),
        )
    }
    assert served == {
        "known": {*item_sources, "text_neighbors"},
        "history": {*item_sources, "text_neighbors"},
        "profile": {"text", "popularity"},
        "history+profile": {*item_sources, "text_neighbors"},
        "popularity": {"popularity"},
    }


NEW_SOURCE = '''
"""Ranking stage: a test source — popularity over the newest half of the interactions."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.ranking.popularity import PopularityRecommender
from recsys.schema import ITEM_IDX, TIMESTAMP, USER_IDX


class RecentRecommender(PopularityRecommender):
    pass


def fit_recent(dataset, frame, config):
    newest = frame.filter(pl.col(TIMESTAMP) >= frame[TIMESTAMP].median())
    rows, cols = newest[USER_IDX].to_numpy(), newest[ITEM_IDX].to_numpy()
    ones = np.ones(rows.size, dtype=np.float32)
    shape = (dataset.n_users, dataset.n_items)
    return RecentRecommender.fit(sp.csr_matrix((ones, (rows, cols)), shape=shape))
'''

RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from support import small_sample
from recsys.config import load_config
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel
from recsys import bundle
from recsys.serving.app import create_app, start_holder

root = Path({root!r})
config = load_config(None, {{
    "blend": {{"sources": ["collab", "popularity", "recent"], "weight_grid": 3}},
    "collab": {{"factors": 8, "epochs": 2, "threads": 1}}, "eval": {{"bootstrap": 200}},
}})
data = small_sample(root / "data", n_users=120, n_items=150)
run_nightly(data, config, root / "var", say=lambda m: None, track=False, progress=False)
model = RecommenderModel.load(bundle.current_bundle(root / "var"))
app = create_app(config, root / "var")
start_holder(app, load_now=True, watch=False)
client = app.test_client()
user = model.users.to_id(0)
answer = client.get(f"/v1/users/{{user}}/recommendations?k=3&explain=false").get_json()
doc = client.get("/openapi.json").get_json()
print(json.dumps({{
    "ranker": model.ranker.names,
    "weights": sorted(json.loads((bundle.current_bundle(root / "var") / "ranker" / "weights.json")
                      .read_text())["default"]),
    "response": sorted(answer["items"][0]["sources"]),
    "schema": sorted(doc["components"]["schemas"]["Sources"]["properties"]),
}}))
"""


@pytest.mark.slow
def test_adding_a_source_takes_two_edits(tmp_path):
    """On a copy of the package: one registry entry (recsys/sources.py), one FrameSource
    (recsys/pipeline/fit.py) and the new source's own module — then the nightly fits it, the
    blend learns its weight, the bundle serves it and the API reports and documents its score."""
    copy = tmp_path / "src"
    shutil.copytree(REPO / "recsys", copy / "recsys")
    shutil.copytree(REPO / "serving", copy / "serving")
    (copy / "recsys" / "ranking" / "recent.py").write_text(NEW_SOURCE)
    _insert(
        copy / "recsys" / "sources.py",
        '    Source("popularity", frozenset(PATHS), "interaction count"),\n',
        '    Source("recent", frozenset(PATHS), "interactions in the newest half"),\n',
    )
    _insert(
        copy / "recsys" / "pipeline" / "fit.py",
        "from recsys.ranking.prior import cold_item_bias\n",
        "from recsys.ranking.recent import RecentRecommender, fit_recent\n",
    )
    _insert(
        copy / "recsys" / "pipeline" / "fit.py",
        '    "popularity": FrameSource(fit_popularity, PopularityRecommender),\n',
        '    "recent": FrameSource(fit_recent, RecentRecommender),\n',
    )
    script = RUN.format(tests=str(REPO / "tests"), root=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=tmp_path,  # not the repository: its recsys would shadow the copy
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["ranker"] == ["collab", "popularity", "recent"]
    assert found["weights"] == ["collab", "popularity", "recent"]
    assert found["response"] == found["schema"] == sorted([*sources.SOURCES, "recent"])


def _insert(path, after: str, new: str) -> None:
    text = path.read_text()
    assert text.count(after) == 1, f"{path}: {after!r} not found once"
    path.write_text(text.replace(after, after + new))
