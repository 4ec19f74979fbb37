"""dataset_stats / format_stats on the small generic catalog (figures computed by hand)."""

from __future__ import annotations

import json

from recsys.data import load_dataset
from recsys.data.stats import dataset_stats, format_stats


def test_stats_of_the_catalog(write_dir, catalog_files):
    stats = dataset_stats(load_dataset(write_dir(catalog_files)))
    assert (stats["users"], stats["items"], stats["interactions"]) == (4, 4, 6)
    assert stats["density"] == 6 / 16
    assert stats["distinct_pairs"] == 6
    assert stats["users_without_interactions"] == 1  # u9: profile only
    assert stats["items_without_interactions"] == 1  # i4
    assert stats["users_with_profile_text"] == 2
    assert stats["items_with_text"] == 4
    assert stats["interactions_per_user"] == {"min": 0, "median": 1.5, "max": 3}
    assert stats["interactions_per_item"] == {"min": 0, "median": 2.0, "max": 2}
    assert stats["time_range"] == {"first": "2021-02-28T23:58:20Z", "last": "2021-03-01T00:01:40Z"}
    json.dumps(stats)  # plain JSON for `recsys data stats --json`


def test_format_stats_lists_every_figure(write_dir, catalog_files):
    stats = dataset_stats(load_dataset(write_dir(catalog_files)))
    text = format_stats(stats)
    assert len(text.splitlines()) == len(stats)
    assert "interactions per user" in text and "min 0, median 1.5, max 3" in text
    assert "item text columns" in text and "title, description" in text
