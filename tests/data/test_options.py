"""DataConfig options through load_dataset: dedupe, k-core minimum counts, rating threshold."""

from __future__ import annotations

import pytest

from recsys.config import DataConfig
from recsys.data import DataValidationError, load_dataset
from recsys.schema import ROW, USER_ID, WEIGHT

ITEMS = "item_id,title\ni1,One\ni2,Two\ni3,Three\n"


def _interactions(*rows: str, header: str = "user_id,item_id,timestamp,weight") -> str:
    return header + "\n" + "\n".join(rows) + "\n"


# u1 saw i1 three times: rows 1 and 3 at t=10 (a tie broken by row), row 2 earlier at t=5
REPEATS = _interactions("u1,i1,10,1", "u1,i1,5,2", "u1,i1,10,3", "u1,i2,7,4", "u2,i1,1,5")


@pytest.mark.parametrize(
    ("dedupe", "rows"),
    [("keep", [2, 4, 1, 3, 5]), ("first", [2, 4, 5]), ("last", [4, 3, 5])],
)
def test_dedupe(write_dir, dedupe, rows):
    directory = write_dir({"items.csv": ITEMS, "interactions.csv": REPEATS})
    data = load_dataset(directory, DataConfig(dedupe=dedupe))
    assert data.interactions[ROW].to_list() == rows  # sorted by (user, timestamp, row)
    assert data.interactions[WEIGHT].to_list() == [float(r) for r in rows]  # weight == row here


def test_min_counts_iterate_to_a_k_core(write_dir):
    # one pass drops u4 (1 interaction) and i3 (1 after that); only a second pass drops u3
    interactions = _interactions(
        "u1,i1,1,1", "u1,i2,2,1", "u2,i1,3,1", "u2,i2,4,1", "u3,i2,5,1", "u3,i3,6,1", "u4,i3,7,1"
    )
    users = "user_id,bio\nu4,profile only\n"
    directory = write_dir(
        {"items.csv": ITEMS, "interactions.csv": interactions, "users.csv": users}
    )
    config = DataConfig(min_user_interactions=2, min_item_interactions=2)
    data = load_dataset(directory, config)
    assert data.interactions[ROW].to_list() == [1, 2, 3, 4]
    assert data.n_items == 3  # i3 stays in the catalog as a cold item
    assert data.users[USER_ID].to_list() == ["u4", "u1", "u2"]  # profile users stay; u3 goes


def test_min_item_count_alone(write_dir):
    interactions = _interactions("u1,i1,1,1", "u2,i1,2,1", "u1,i2,3,1")
    directory = write_dir({"items.csv": ITEMS, "interactions.csv": interactions})
    data = load_dataset(directory, DataConfig(min_item_interactions=2))
    assert data.interactions[ROW].to_list() == [1, 2]
    assert load_dataset(directory).interactions.height == 3  # default: nothing dropped


def test_rating_threshold_keeps_ratings_at_or_above(write_dir):
    header = "user_id,item_id,timestamp,rating"
    interactions = _interactions("u1,i1,1,4.0", "u1,i2,2,3.5", "u2,i3,3,2", header=header)
    directory = write_dir({"items.csv": ITEMS, "interactions.csv": interactions})
    data = load_dataset(directory, DataConfig(rating_threshold=3.5))
    assert data.interactions[ROW].to_list() == [1, 2]
    assert data.interactions[WEIGHT].to_list() == [1.0, 1.0]  # ratings are not weights
    assert data.users[USER_ID].to_list() == ["u1"]  # u2 had only a low rating
    with pytest.raises(DataValidationError, match="rating_threshold=5.0"):
        load_dataset(directory, DataConfig(rating_threshold=5.0))
