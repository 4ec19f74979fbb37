"""benchmarks/published_quality.py --lists-from: a kept run's lists are scored again only when its
data directory holds the variant's REST exactly, and never from the directory --keep empties."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """The benchmark modules (they import each other by plain name), off sys.path afterwards."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield {n: importlib.import_module(n) for n in ("published_quality", "outside_in")}
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_kept_run_is_scored_only_on_the_same_rest(bench, tmp_path):
    quality, outside_in = bench["published_quality"], bench["outside_in"]
    variant = outside_in.load_variant(REPO / "data", "sample", max_users=300)
    kept = tmp_path / "sample" / "default" / "product-0"
    with pytest.raises(SystemExit, match="expected .*recommendations.csv"):
        quality.kept_product(variant, kept)
    other = outside_in.load_variant(REPO / "data", "sample", max_users=200)
    outside_in.write_contract_dir(other, kept / "data")  # another REST
    (kept / "recommendations.csv").write_text("user_id,rank,item_id,score\n")
    with pytest.raises(SystemExit, match="another REST"):
        quality.kept_product(variant, kept)


def test_lists_from_and_keep_must_differ(bench, tmp_path, capsys):
    quality = bench["published_quality"]
    same = ["--keep", str(tmp_path / "k"), "--lists-from", str(tmp_path / "k")]
    with pytest.raises(SystemExit):
        quality.parse_args(["--datasets", "ml-100k", *same])
    assert "--keep empties it" in capsys.readouterr().err
    args = quality.parse_args(["--lists-from", str(tmp_path / "a"), "--keep", str(tmp_path / "b")])
    assert args.lists_from == tmp_path / "a"
