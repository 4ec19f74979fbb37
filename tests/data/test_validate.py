"""Every validation error names the file, the column and the first offending rows."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.config import DataConfig
from recsys.data import DataValidationError, load_dataset


def _error(directory, config: DataConfig | None = None) -> str:
    with pytest.raises(DataValidationError) as err:
        load_dataset(directory, config)
    return str(err.value)


def _edited(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in files[name], old  # the edit must apply, or the test proves nothing
    return {**files, name: files[name].replace(old, new)}


def test_missing_directory(tmp_path):
    assert "expected a data directory" in _error(tmp_path / "nope")


@pytest.mark.parametrize("table", ["interactions", "items"])
def test_missing_required_table(write_dir, catalog_files, table):
    del catalog_files[f"{table}.csv"]
    message = _error(write_dir(catalog_files))
    assert f"missing required table '{table}'" in message
    assert f"{table}.csv or {table}.parquet" in message
    assert "users.csv" in message  # what was found


def test_two_files_for_one_table(write_dir, catalog_files):
    directory = write_dir(catalog_files)
    pl.DataFrame({"item_id": ["x"]}).write_parquet(directory / "items.parquet")
    assert "found both items.csv and items.parquet" in _error(directory)


def test_missing_required_column_lists_found_columns(write_dir, catalog_files):
    files = _edited(catalog_files, "interactions.csv", "timestamp,weight", "time,weight")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "'timestamp'" in message
    assert "found columns: user_id, item_id, time, weight" in message


def test_null_item_id_in_items(write_dir, catalog_files):
    files = _edited(catalog_files, "items.csv", "i2,1999", ",1999")
    message = _error(write_dir(files))
    assert "items.csv" in message and "column 'item_id'" in message
    assert "in 1 row(s)" in message and "row 2 None" in message


def test_blank_user_id_in_interactions(write_dir, catalog_files):
    files = _edited(catalog_files, "interactions.csv", "u3,i3", "  ,i3")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "column 'user_id'" in message
    assert "row 4 '  '" in message


def test_duplicate_item_ids(write_dir, catalog_files):
    files = _edited(catalog_files, "items.csv", "i4,2020", "i2,2020")
    message = _error(write_dir(files))
    assert "items.csv" in message and "column 'item_id'" in message and "unique" in message
    assert "in 2 row(s)" in message and "row 2 'i2', row 4 'i2'" in message


def test_duplicate_user_ids(write_dir, catalog_files):
    files = _edited(catalog_files, "users.csv", "u9,", "u1,")
    message = _error(write_dir(files))
    assert "users.csv" in message and "column 'user_id'" in message
    assert "row 1 'u1', row 2 'u1'" in message


def test_unknown_item_reference(write_dir, catalog_files):
    files = _edited(catalog_files, "interactions.csv", "u3,i3", "u3,zz")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "column 'item_id'" in message
    assert "items.csv" in message and "row 4 'zz'" in message


def test_unparseable_timestamps_show_the_values(write_dir, catalog_files):
    files = _edited(catalog_files, "interactions.csv", "1614556900", "yesterday")
    files = _edited(files, "interactions.csv", "2021-03-01 00:01:00", "2021-13-01")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "column 'timestamp'" in message
    assert "in 2 row(s)" in message and "row 3 'yesterday', row 4 '2021-13-01'" in message


def test_only_the_first_five_offending_rows_are_quoted(write_dir, catalog_files):
    rows = "".join(f"u{n},i2,never,1\n" for n in range(12))
    files = {**catalog_files, "interactions.csv": "user_id,item_id,timestamp,weight\n" + rows}
    message = _error(write_dir(files))
    assert "row 5 'never'" in message and "row 6" not in message
    assert "in 12 row(s); first 5" in message


@pytest.mark.parametrize("name", ["items.csv", "interactions.csv", "users.csv"])
def test_empty_tables(write_dir, catalog_files, name):
    header = catalog_files[name].splitlines()[0] + "\n"
    message = _error(write_dir({**catalog_files, name: header}))
    assert name in message and "expected at least one data row" in message


def test_non_utf8_text_reports_row_and_column(write_dir, catalog_files):
    files: dict = dict(catalog_files)
    files["items.csv"] = (
        catalog_files["items.csv"]
        .encode("utf-8")
        .replace("Amélie".encode(), "Amélie".encode("latin-1"))
    )
    message = _error(write_dir(files))
    assert "items.csv" in message and "column 'title'" in message
    assert "data row 3 (line 4)" in message and "UTF-8" in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [("-1", "negative"), ("heavy", "expected a finite number"), ("nan", "expected a finite")],
)
def test_bad_weights(write_dir, catalog_files, value, problem):
    files = _edited(catalog_files, "interactions.csv", "1614556700,0.5", f"1614556700,{value}")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "column 'weight'" in message
    assert problem in message and f"row 5 '{value}'" in message


def test_rating_threshold_needs_a_rating_column(write_dir, catalog_files):
    message = _error(write_dir(catalog_files), DataConfig(rating_threshold=4.0))
    assert "interactions.csv" in message and "'rating'" in message
    assert "found columns: user_id, item_id, timestamp, weight" in message


def test_non_numeric_rating(write_dir, catalog_files):
    files = {
        **catalog_files,
        "interactions.csv": "user_id,item_id,timestamp,rating\nu1,i2,1,4\nu1,i3,2,good\n",
    }
    message = _error(write_dir(files))
    assert "column 'rating'" in message and "row 2 'good'" in message


def test_filters_that_leave_nothing_are_an_error(write_dir, catalog_files):
    message = _error(write_dir(catalog_files), DataConfig(min_user_interactions=10))
    assert "interactions.csv" in message and "min_user_interactions=10" in message


def test_movielens_files_are_validated_too(write_dir):
    directory = write_dir(
        {
            "u.data": "1\t10\t5\t881250949\n1\t99\t5\t881250950\n",
            "u.item": "10|A (2001)|01-Jan-2001||http://x|" + "|".join(["0"] * 19) + "\n",
        }
    )
    message = _error(directory)
    assert "u.data" in message and "item_id" in message and "row 2 '99'" in message


def test_row_with_too_many_fields(write_dir, catalog_files):
    files = _edited(
        catalog_files, "interactions.csv", "u3,i3,2021-03-01 00:01:00,1.0", "u3,i3,1,1,9"
    )
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "found 5 in data row 4 (line 5)" in message


# ---- edges found by the hostile test of issue 17: each a clear error, never a traceback ----


@pytest.mark.parametrize(
    "value, shown",
    [
        ("1614556800000", "'1614556800000'"),  # epoch milliseconds
        ("253402300800", "'253402300800'"),  # 10000-01-01T00:00:00Z in seconds
        ("-62135596801", "'-62135596801'"),  # before year 1
    ],
)
def test_timestamps_beyond_the_calendar_name_file_column_and_row(
    write_dir, catalog_files, value, shown
):
    files = _edited(catalog_files, "interactions.csv", "u1,i2,1614556900", f"u1,i2,{value}")
    message = _error(write_dir(files))
    assert "interactions.csv" in message and "column 'timestamp'" in message
    assert "within the years 1-9999" in message and f"row 3 {shown}" in message


def test_the_last_second_of_year_9999_is_accepted(write_dir, catalog_files):
    files = _edited(catalog_files, "interactions.csv", "u1,i2,1614556900", "u1,i2,253402300799")
    assert load_dataset(write_dir(files)).interactions.height == 6


def test_datetime_parquet_beyond_the_calendar_is_refused(write_dir, catalog_files):
    directory = write_dir({k: v for k, v in catalog_files.items() if k != "interactions.csv"})
    millis = pl.Series("timestamp", [1_614_556_800_000, 400_000_000_000_000])  # 2nd: year ~14645
    frame = pl.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i2", "i3"]})
    frame.with_columns(millis.cast(pl.Datetime("ms"))).write_parquet(
        directory / "interactions.parquet"
    )
    message = _error(directory)
    assert "interactions.parquet" in message and "within the years 1-9999" in message
    assert "row 2" in message


@pytest.mark.parametrize("table", ["items.csv", "interactions.csv"])
def test_an_empty_csv_file_is_named(write_dir, catalog_files, table):
    message = _error(write_dir({**catalog_files, table: ""}))
    assert f"{table}: expected a header line naming the columns, found an empty file" in message


@pytest.mark.parametrize(
    "column, values, expected",
    [
        ("item_id", [["i2"], ["i3"]], "expected ids as text or integers"),
        ("user_id", [{"a": 1}, {"a": 2}], "expected ids as text or integers"),
        ("timestamp", [[1], [2]], "expected epoch seconds, ISO-8601 text or datetimes"),
        ("weight", [[1.0], [2.0]], "expected numbers"),
    ],
)
def test_nested_parquet_columns_are_named_with_their_type(
    write_dir, catalog_files, column, values, expected
):
    directory = write_dir({k: v for k, v in catalog_files.items() if k != "interactions.csv"})
    frame = pl.DataFrame(
        {"user_id": ["u1", "u1"], "item_id": ["i2", "i3"], "timestamp": [1, 2], "weight": [1, 1]}
    )
    frame.with_columns(pl.Series(column, values)).write_parquet(directory / "interactions.parquet")
    message = _error(directory)
    assert f"interactions.parquet: column '{column}': {expected}, found values of type" in message


def test_a_duration_timestamp_column_is_named(write_dir, catalog_files):
    from datetime import timedelta

    directory = write_dir({k: v for k, v in catalog_files.items() if k != "interactions.csv"})
    stamps = [timedelta(seconds=1), timedelta(seconds=2)]
    frame = pl.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i2", "i3"], "timestamp": stamps})
    frame.write_parquet(directory / "interactions.parquet")
    message = _error(directory)
    assert "column 'timestamp'" in message and "Duration" in message


def test_a_requested_list_text_column_is_refused(write_dir, catalog_files):
    directory = write_dir({k: v for k, v in catalog_files.items() if k != "items.csv"})
    items = pl.DataFrame(
        {"item_id": ["007", "i2", "i3", "i4"], "title": list("abcd"), "tags": [["x"]] * 4}
    )
    items.write_parquet(directory / "items.parquet")
    assert load_dataset(directory).item_text_columns == ["title"]  # not chosen by default
    message = _error(directory, DataConfig(item_text_columns=["title", "tags"]))
    assert "items.parquet: text column(s) ['tags']: expected text or numbers" in message
