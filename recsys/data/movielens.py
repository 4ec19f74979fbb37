"""Data stage: reads MovieLens directories (ml-100k, ml-1m, ml-latest/-25m/-32m) as raw tables."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from recsys.data.raw import SOURCE_ROW, RawTable, RawTables, read_table_file
from recsys.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
ML1M_AGES = {
    "1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
    "56": "56+",
}  # fmt: skip
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]  # fmt: skip
PROFILE = "profile"  # the user text column built from demographics
NO_GENRES = "(no genres listed)"


def detect_movielens(directory: Path) -> str | None:
    """The MovieLens layout of a directory, or None when it is not one."""
    if (directory / "u.data").is_file() and (directory / "u.item").is_file():
        return "ml-100k"
    if (directory / "ratings.dat").is_file() and (directory / "movies.dat").is_file():
        return "ml-1m"
    if (directory / "ratings.csv").is_file() and (directory / "movies.csv").is_file():
        return "ml-latest"
    return None


def read_movielens(directory: Path, layout: str) -> RawTables:
    """Raw items/interactions/users of a MovieLens directory; ratings kept, weight left at 1."""
    readers = {"ml-100k": _read_ml100k, "ml-1m": _read_ml1m, "ml-latest": _read_ml_latest}
    return readers[layout](directory)


def _read_delimited(path: Path, separator: str, names: list[str]) -> RawTable:
    """A header-less latin-1 file whose fields are split by `separator` (may be '::')."""
    text = path.read_bytes().decode("latin-1")  # latin-1 decodes any byte: never fails
    if len(separator) > 1:
        text = text.replace(separator, "\x1f")
        separator = "\x1f"
    frame = pl.read_csv(
        io.BytesIO(text.encode("utf-8")),
        separator=separator,
        has_header=False,
        new_columns=names,
        infer_schema=False,
        quote_char=None,
        row_index_name=SOURCE_ROW,
        row_index_offset=1,
    ).with_columns(pl.col(SOURCE_ROW).cast(pl.Int64))
    labels = {name: f"field {n + 1} ({name})" for n, name in enumerate(names)}
    return RawTable(frame, path, labels, string_columns=None)


def _read_ml100k(directory: Path) -> RawTables:
    ratings = _read_delimited(directory / "u.data", "\t", [USER_ID, ITEM_ID, RATING, TIMESTAMP])
    genres = _ml100k_genre_names(directory)
    flags = [f"g{n}" for n in range(len(genres))]
    names = [ITEM_ID, "title", "release_date", "video_release_date", "url", *flags]
    raw_items = _read_delimited(directory / "u.item", "|", names)
    items = raw_items.frame.select(
        SOURCE_ROW, ITEM_ID, "title", _join_flags(flags, genres).alias("genres")
    )
    users = None
    if (directory / "u.user").is_file():
        raw = _read_delimited(
            directory / "u.user", "|", [USER_ID, "age", "gender", "occupation", "zip"]
        )
        profile = _profile(pl.col("age"), pl.col("gender"), pl.col("occupation"), pl.col("zip"))
        users = raw.replace(frame=raw.frame.select(SOURCE_ROW, USER_ID, profile))
    return RawTables(raw_items.replace(frame=items), ratings, users, "ml-100k")


def _ml100k_genre_names(directory: Path) -> list[str]:
    path = directory / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    pairs = [line.rsplit("|", 1) for line in path.read_text("latin-1").splitlines() if line]
    return [name for name, _ in sorted(pairs, key=lambda pair: int(pair[1]))]


def _join_flags(flags: list[str], genres: list[str]) -> pl.Expr:
    """'Action, Comedy' from 0/1 flag columns."""
    named = [pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, genres, strict=True)]
    return pl.concat_str(named, separator=", ", ignore_nulls=True)


def _profile(age: pl.Expr, gender: pl.Expr, occupation: pl.Expr, zip_code: pl.Expr) -> pl.Expr:
    parts = [pl.lit("age "), age, pl.lit(", gender "), gender, pl.lit(", occupation ")]
    parts += [occupation, pl.lit(", zip "), zip_code]
    return pl.concat_str(parts).alias(PROFILE)


def _read_ml1m(directory: Path) -> RawTables:
    ratings = _read_delimited(
        directory / "ratings.dat", "::", [USER_ID, ITEM_ID, RATING, TIMESTAMP]
    )
    raw_items = _read_delimited(directory / "movies.dat", "::", [ITEM_ID, "title", "genres"])
    items = raw_items.frame.with_columns(_genres_text(pl.col("genres")))
    users = None
    if (directory / "users.dat").is_file():
        names = [USER_ID, "gender", "age", "occupation", "zip"]
        raw = _read_delimited(directory / "users.dat", "::", names)
        age = pl.col("age").replace_strict(ML1M_AGES, default=pl.col("age"))
        codes = {str(n): name for n, name in enumerate(ML1M_OCCUPATIONS)}
        job = pl.col("occupation").replace_strict(codes, default=pl.col("occupation"))
        profile = _profile(age, pl.col("gender"), job, pl.col("zip"))
        users = raw.replace(frame=raw.frame.select(SOURCE_ROW, USER_ID, profile))
    return RawTables(raw_items.replace(frame=items), ratings, users, "ml-1m")


def _genres_text(genres: pl.Expr) -> pl.Expr:
    """'Action|Comedy' -> 'Action, Comedy'; the '(no genres listed)' marker -> ''."""
    text = genres.str.replace_all("|", ", ", literal=True)
    return pl.when(genres == NO_GENRES).then(pl.lit("")).otherwise(text).alias("genres")


def _read_ml_latest(directory: Path) -> RawTables:
    ratings = read_table_file(directory / "ratings.csv", {"userId": USER_ID, "movieId": ITEM_ID})
    items = read_table_file(directory / "movies.csv", {"movieId": ITEM_ID})
    frame = items.frame.with_columns(_genres_text(pl.col("genres")))
    if (directory / "tags.csv").is_file():
        tags = read_table_file(directory / "tags.csv", {"movieId": ITEM_ID}).frame
        frame = frame.join(_aggregate_tags(tags), on=ITEM_ID, how="left", maintain_order="left")
        frame = frame.with_columns(pl.col("tags").fill_null(""))
    return RawTables(items.replace(frame=frame), ratings, None, "ml-latest")


def _aggregate_tags(tags: pl.DataFrame) -> pl.DataFrame:
    """One 'tags' text per movie: distinct tags, most frequent first (ties: first seen)."""
    tag = pl.col("tag").str.strip_chars()
    counted = (
        tags.filter(tag.is_not_null() & (tag != ""))
        .with_columns(tag)
        .group_by(ITEM_ID, "tag")
        .agg(pl.len().alias("n"), pl.col(SOURCE_ROW).min().alias("first"))
        .sort([ITEM_ID, "n", "first"], descending=[False, True, False])
    )
    return counted.group_by(ITEM_ID, maintain_order=True).agg(
        pl.col("tag").str.join(", ").alias("tags")
    )
