"""End-to-end: the promotion gate's defaults refuse a degenerate candidate (issue 17) — one user
with 16 interactions was published and promoted with every metric at 0.0."""

from __future__ import annotations

import polars as pl
import pytest
from support import build_tiny_bert, fast_config

from recsys import bundle
from recsys.pipeline.nightly import run_nightly

pytestmark = pytest.mark.slow


def test_one_user_with_sixteen_interactions_is_not_promoted(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    items = [f"i{n}" for n in range(40)]
    pl.DataFrame({"item_id": items, "title": [f"item number {n}" for n in range(40)]}).write_csv(
        data / "items.csv"
    )
    pl.DataFrame(
        {"user_id": ["u1"] * 16, "item_id": items[:16], "timestamp": list(range(1, 17))}
    ).write_csv(data / "interactions.csv")
    config = fast_config(build_tiny_bert(tmp_path / "bert"))
    result = run_nightly(data, config, tmp_path / "var", say=lambda m: None, track=False)
    assert result.published and not result.promoted
    assert "1 evaluation users is below the minimum 20" in result.message
    assert bundle.read_pointer(tmp_path / "var") is None  # nothing serves it
    assert bundle.read_pointer(tmp_path / "var", "CHALLENGER") == result.published
