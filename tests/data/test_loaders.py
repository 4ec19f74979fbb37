"""load_dataset on each input layout: generic CSV/parquet and the MovieLens directories."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.config import DataConfig
from recsys.data import DataValidationError, load_dataset
from recsys.ids import IdMap
from recsys.schema import INTERACTION_DTYPES, ITEM_ID, ITEM_IDX, USER_ID, USER_IDX


def _rows(frame: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.iter_rows()]


def test_generic_csv_builds_the_canonical_tables(write_dir, catalog_files, catalog_interactions):
    data = load_dataset(write_dir(catalog_files), DataConfig())
    assert data.items[ITEM_ID].to_list() == ["007", "i2", "i3", "i4"]  # ids stay strings
    assert data.items[ITEM_IDX].to_list() == [0, 1, 2, 3]
    assert data.item_text_columns == ["title", "description"]  # 'year' is numeric; title first
    assert data.items.columns == [ITEM_IDX, ITEM_ID, "title", "description"]
    assert data.items.row(2) == (2, "i3", "Amélie", "A shy waitress in Paris")
    assert data.users[USER_ID].to_list() == ["u1", "u9", "u2", "u3"]
    assert data.users["bio"].to_list() == ["likes spy films", "new here", "", ""]
    assert data.user_text_columns == ["bio"]
    assert dict(data.interactions.schema) == INTERACTION_DTYPES
    assert _rows(data.interactions) == catalog_interactions
    assert data.item_map.to_idx("i4") == 3 and data.user_map.to_idx("u3") == 3
    assert (data.n_users, data.n_items) == (4, 4)


def test_interaction_matrix_sums_weights(write_dir, catalog_files):
    data = load_dataset(write_dir(catalog_files))
    matrix = data.interaction_matrix()
    assert matrix.shape == (4, 4)
    assert matrix[0, 0] == pytest.approx(2.0) and matrix[2, 0] == pytest.approx(0.5)
    assert matrix[:, 3].sum() == 0  # the cold item


def test_parquet_with_integer_ids_and_datetimes_matches_csv(write_dir, tmp_path):
    items = pl.DataFrame({ITEM_ID: [10, 20, 30], "title": ["A", "B", "C"], "n": [1, 2, 3]})
    moments = [datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 3, 2, tzinfo=UTC)]
    interactions = pl.DataFrame({USER_ID: [7, 5], ITEM_ID: [30, 10], "timestamp": moments})
    directory = write_dir({})
    items.write_parquet(directory / "items.parquet")
    interactions.write_parquet(directory / "interactions.parquet")
    data = load_dataset(directory)
    assert data.items[ITEM_ID].to_list() == ["10", "20", "30"]
    assert data.item_text_columns == ["title"]  # the Int64 column 'n' is not text
    assert data.users[USER_ID].to_list() == ["7", "5"]
    assert _rows(data.interactions) == [(0, 2, 1614556800, 1.0, 1), (1, 0, 1614643200, 1.0, 2)]

    csv_dir = write_dir(
        {
            "items.csv": "item_id,title\n10,A\n20,B\n30,C\n",
            "interactions.csv": "user_id,item_id,timestamp\n7,30,1614556800\n5,10,1614643200\n",
        }
    )
    assert_frame_equal(load_dataset(csv_dir).interactions, data.interactions)


def test_text_column_override_and_unknown_column(write_dir, catalog_files):
    directory = write_dir(catalog_files)
    data = load_dataset(directory, DataConfig(item_text_columns=["description", "year"]))
    assert data.item_text_columns == ["description", "year"]
    assert data.items["year"].to_list() == ["1962", "1999", "2001", "2020"]
    with pytest.raises(DataValidationError) as err:
        load_dataset(directory, DataConfig(item_text_columns=["title", "plot"]))
    message = str(err.value)
    assert "items.csv" in message and "'plot'" in message
    assert "year, description, title" in message  # the available columns are listed


def test_user_text_columns_need_a_users_table(write_dir, catalog_files):
    del catalog_files["users.csv"]
    directory = write_dir(catalog_files)
    assert load_dataset(directory).user_text_columns == []
    with pytest.raises(DataValidationError, match="users.csv or users.parquet"):
        load_dataset(directory, DataConfig(user_text_columns=["bio"]))


def test_loading_is_deterministic(write_dir, catalog_files):
    directory = write_dir(catalog_files)
    first, second = load_dataset(directory), load_dataset(directory)
    assert_frame_equal(first.items, second.items)
    assert_frame_equal(first.users, second.users)
    assert_frame_equal(first.interactions, second.interactions)


def test_id_maps_round_trip_through_json(write_dir, catalog_files, tmp_path):
    data = load_dataset(write_dir(catalog_files))
    data.item_map.save(tmp_path / "items.json")
    data.user_map.save(tmp_path / "users.json")
    items, users = IdMap.load(tmp_path / "items.json"), IdMap.load(tmp_path / "users.json")
    assert items == data.item_map and users == data.user_map
    assert items.to_ids(data.items[ITEM_IDX].to_list()) == data.items[ITEM_ID].to_list()
    assert (
        users.to_indices(data.users[USER_ID].to_list()).tolist() == data.users[USER_IDX].to_list()
    )


def _flags(*on: int) -> str:
    return "|".join("1" if n in on else "0" for n in range(19))


def test_ml_100k_layout(write_dir):
    u_item = (
        f"10|Amélie (2001)|01-Jan-2001||http://x|{_flags(5, 8, 14)}\n"
        f"20|Toy Story (1995)|01-Jan-1995||http://y|{_flags(3)}\n"
        f"30|Unseen (1990)|01-Jan-1990||http://z|{_flags()}\n"
    )
    directory = write_dir(
        {
            "u.data": "2\t20\t3\t881250950\n1\t10\t5\t881250949\n1\t20\t1\t881250951\n",
            "u.item": u_item.encode("latin-1"),
            "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
        }
    )
    data = load_dataset(directory)
    assert data.source.endswith("(ml-100k)")
    assert data.items["title"].to_list() == ["Amélie (2001)", "Toy Story (1995)", "Unseen (1990)"]
    assert data.items["genres"].to_list() == ["Comedy, Drama, Romance", "Animation", ""]
    assert data.item_text_columns == ["title", "genres"]
    assert data.users["profile"][0] == "age 24, gender M, occupation technician, zip 85711"
    assert data.interactions.columns == list(INTERACTION_DTYPES)  # the rating is not carried
    assert _rows(data.interactions) == [
        (0, 0, 881250949, 1.0, 2),
        (0, 1, 881250951, 1.0, 3),
        (1, 1, 881250950, 1.0, 1),
    ]


def test_ml_1m_layout(write_dir):
    directory = write_dir(
        {
            "ratings.dat": "1::10::5::978300760\n2::20::2::978300761\n",
            "movies.dat": "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n",
            "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
        },
        encoding="latin-1",
    )
    data = load_dataset(directory)
    assert data.source.endswith("(ml-1m)")
    assert data.items["title"].to_list() == ["Amélie (2001)", "Heat (1995)"]
    assert data.items["genres"].to_list() == ["Comedy, Romance", "Action"]
    assert data.users["profile"].to_list() == [
        "age under 18, gender F, occupation K-12 student, zip 48067",
        "age 56+, gender M, occupation self-employed, zip 70072",
    ]
    assert _rows(data.interactions) == [(0, 0, 978300760, 1.0, 1), (1, 1, 978300761, 1.0, 2)]


def _ml_latest_files() -> dict[str, str]:
    return {
        "ratings.csv": "userId,movieId,rating,timestamp\n1,3,5.0,100\n1,4,1.0,200\n2,3,3.0,150\n",
        "movies.csv": (
            "movieId,title,genres\n"
            '3,"American President, The (1995)",Comedy|Drama|Romance\n'
            "4,Nothing (2000),(no genres listed)\n"
            "5,Cold (2001),Drama\n"
        ),
        "tags.csv": (
            "userId,movieId,tag,timestamp\n"
            "1,3,funny,1\n2,3,dull,2\n1,3,politics,3\n2,3,politics,4\n1,3,funny ,5\n1,3,dull,6\n"
            "2,3,witty,7\n1,4,boring,8\n"
        ),
    }


def test_ml_latest_layout(write_dir):
    data = load_dataset(write_dir(_ml_latest_files()))
    assert data.source.endswith("(ml-latest)")
    assert data.item_text_columns == ["title", "genres", "tags"]
    assert data.items["title"][0] == "American President, The (1995)"
    assert data.items["genres"].to_list() == ["Comedy, Drama, Romance", "", "Drama"]
    # funny/dull/politics twice each: first seen first; witty once
    assert data.items["tags"].to_list() == ["funny, dull, politics, witty", "boring", ""]
    assert data.users.columns == [USER_IDX, USER_ID]
    assert _rows(data.interactions) == [
        (0, 0, 100, 1.0, 1),
        (0, 1, 200, 1.0, 2),
        (1, 0, 150, 1.0, 3),
    ]


def test_ml_latest_rating_threshold(write_dir):
    directory = write_dir(_ml_latest_files())
    data = load_dataset(directory, DataConfig(rating_threshold=3.0))
    assert _rows(data.interactions) == [(0, 0, 100, 1.0, 1), (1, 0, 150, 1.0, 3)]
    assert data.n_items == 3  # the catalog is kept whole
