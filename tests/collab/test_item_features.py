"""item_token_features: tokens from item text columns for LightFM's hybrid mode."""

import polars as pl
import pytest

from recsys.collab.features import item_token_features
from recsys.data.dataset import Dataset
from recsys.ids import IdMap
from recsys.schema import ITEM_ID, ITEM_IDX, ROW, TIMESTAMP, USER_ID, USER_IDX, WEIGHT


def tiny_dataset(titles, genres):
    ids = [f"i{n}" for n in range(len(titles))]
    items = pl.DataFrame(
        {
            ITEM_IDX: pl.Series(range(len(ids)), dtype=pl.Int32),
            ITEM_ID: ids,
            "title": titles,
            "genres": genres,
        }
    )
    users = pl.DataFrame({USER_IDX: pl.Series([0], dtype=pl.Int32), USER_ID: ["u0"]})
    interactions = pl.DataFrame(
        {
            USER_IDX: pl.Series([0], dtype=pl.Int32),
            ITEM_IDX: pl.Series([0], dtype=pl.Int32),
            TIMESTAMP: pl.Series([1], dtype=pl.Int64),
            WEIGHT: pl.Series([1.0], dtype=pl.Float32),
            ROW: pl.Series([0], dtype=pl.Int64),
        }
    )
    return Dataset(
        items, users, interactions, IdMap(ids), IdMap(["u0"]), ["title", "genres"], [], "tiny"
    )


def test_tokens_from_separated_categories_and_words():
    dataset = tiny_dataset(
        ["Toy Story (1995)", "Heat (1995)", "Toy Soldiers", "Alien"],
        ["Animation|Comedy", "Action|Crime", "Action, Comedy", None],
    )
    matrix, names = item_token_features(dataset, max_share=0.75)
    assert names == sorted(
        ["genres:action", "genres:comedy", "title:1995", "title:toy"]
    )  # tokens on >= 2 items and <= 75% of them; "alien", "heat" and "crime" are on one only
    dense = matrix.toarray()
    as_sets = [{names[c] for c in row.nonzero()[0]} for row in dense]
    assert as_sets[0] == {"genres:comedy", "title:1995", "title:toy"}
    assert as_sets[2] == {"genres:action", "genres:comedy", "title:toy"}
    assert as_sets[3] == set()  # a null genre and a unique title give no features
    assert set(dense.ravel().tolist()) <= {0.0, 1.0}


def test_very_common_tokens_and_the_cap_are_applied():
    dataset = tiny_dataset(["A x", "B x", "C x", "D y"], ["g", "g", "h", "h"])
    _, names = item_token_features(dataset, max_share=0.5)
    assert "title:x" not in names and names == ["genres:g", "genres:h"]
    _, capped = item_token_features(dataset, max_share=1.0, max_tokens=1)
    assert capped == ["title:x"]  # the most frequent token wins the single slot


def test_unknown_column_is_named():
    dataset = tiny_dataset(["A"], ["g"])
    with pytest.raises(ValueError, match=r"columns \['plot'\] not found"):
        item_token_features(dataset, columns=["plot"])
