"""Text stage: item documents and user documents (profile + recent titles) from a Dataset.

Reads the text columns of Dataset.items / Dataset.users and an interactions frame; writes nothing.
The encoder reads the documents; `text_hash` keys its embedding cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import polars as pl

from recsys.config import TextConfig
from recsys.data.dataset import Dataset
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX

# Prose columns go in as written; any other column is labelled with its name ("Categories: a, b")
# so the encoder can tell a list of tags from a sentence.
PROSE_COLUMNS = frozenset(
    {"description", "overview", "summary", "plot", "synopsis", "text", "body", "abstract"}
    | {"content", "profile", "bio", "about"}
)
LIST_SEPARATOR = r"\s*[|;]\s*"  # "Action|Comedy" (MovieLens, our sample) -> "Action, Comedy"
HISTORY_PREFIX = "Recent:"
_TITLE = "__title"


def text_hash(text: str) -> str:
    """First 16 hex chars of the sha256 of the UTF-8 text: the embedding-cache key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def truncate_at_word(text: str, max_chars: int) -> str:
    """At most max_chars, cut at the last space (a hard cut when one word fills half the room)."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]  # one extra char: a space there means the cut is on a boundary
    space = head.rfind(" ")
    head = head[:space] if space >= max_chars // 2 else text[:max_chars]
    return head.rstrip(" ,;:-")


def item_documents(dataset: Dataset, config: TextConfig) -> list[str]:
    """One document per item_idx: "Title. Description. Categories: a, b", nulls skipped."""
    items = _by_index(dataset.items, ITEM_IDX, dataset.n_items, dataset.source)
    columns = _title_first(dataset.item_text_columns, config.title_column)
    docs = items.select(_document(items, columns, config.title_column))[_TITLE]
    docs = docs.fill_null("").to_list()
    return [truncate_at_word(doc, config.max_item_chars) for doc in docs]


def user_documents(dataset: Dataset, interactions: pl.DataFrame, config: TextConfig) -> list[str]:
    """One document per user_idx: the profile text, then the titles of the user's most recent
    `user_history_titles` distinct items in `interactions`, newest first.

    With both present, the profile gets at most half of max_user_chars so history always shows;
    titles are dropped whole, never cut.
    """
    users = _by_index(dataset.users, USER_IDX, dataset.n_users, dataset.source)
    profiles = users.select(_document(users, dataset.user_text_columns, None))[_TITLE]
    profiles = profiles.fill_null("").to_list()
    histories = _recent_titles(dataset, interactions, config)
    return [
        _user_document(profile, history, config.max_user_chars)
        for profile, history in zip(profiles, histories, strict=True)
    ]


def compose_user_document(
    profile: str | None, titles_newest_first: Sequence[str], max_chars: int
) -> str:
    """The user document for a profile and titles given directly (e.g. an anonymous request at
    serving time): the same text user_documents builds for a user with that profile and history.
    A repeated title counts once, at its newest place; the caller keeps at most
    `user_history_titles` of them."""
    profile = " ".join((profile or "").split())
    if profile and profile[-1] not in ".!?":
        profile += "."
    titles = [" ".join(title.split()) for title in titles_newest_first if title and title.strip()]
    return _user_document(profile, list(dict.fromkeys(titles)), max_chars)


def user_document(profile: str | None, titles_newest_first: Sequence[str], max_chars: int) -> str:
    """The text the BERT user tower reads: the profile, then "Recent: A; B." with the newest
    titles first (empty titles skipped)."""
    return _user_document((profile or "").strip(), [t for t in titles_newest_first if t], max_chars)


def _user_document(profile: str, titles: list[str], max_chars: int) -> str:
    if not titles:
        return truncate_at_word(profile, max_chars)
    text = truncate_at_word(profile, max_chars // 2 - 1)
    if text and text[-1] not in ".!?":
        text += "."  # a cut profile still ends its sentence before the history starts
    prefix = f"{text} {HISTORY_PREFIX}" if text else HISTORY_PREFIX
    kept: list[str] = []  # whole titles while they fit: "Recent: A; B; C."
    for title in titles:
        if len(f"{prefix} {'; '.join([*kept, title])}.") > max_chars:
            break
        kept.append(title)
    return f"{prefix} {'; '.join(kept)}." if kept else text


def _recent_titles(
    dataset: Dataset, interactions: pl.DataFrame, config: TextConfig
) -> list[list[str]]:
    """Per user_idx, titles of the newest distinct items first (at most user_history_titles)."""
    histories: list[list[str]] = [[] for _ in range(dataset.n_users)]
    title_column = _history_title_column(dataset, config.title_column)
    if config.user_history_titles == 0 or title_column is None or interactions.height == 0:
        return histories
    _check_range(interactions, USER_IDX, dataset.n_users, dataset.source)
    _check_range(interactions, ITEM_IDX, dataset.n_items, dataset.source)
    items = _by_index(dataset.items, ITEM_IDX, dataset.n_items, dataset.source)
    titles = items.select(_clean(pl.col(title_column)).alias(_TITLE))[_TITLE]  # (n_items,)
    order = [c for c in (TIMESTAMP, ROW) if c in interactions.columns]
    recent = (
        interactions.select(USER_IDX, ITEM_IDX, *order)
        .sort([USER_IDX, *order], descending=[False] + [True] * len(order))  # newest first
        .unique(subset=[USER_IDX, ITEM_IDX], keep="first", maintain_order=True)  # repeats once
    )
    recent = (
        recent.with_columns(titles.gather(recent[ITEM_IDX]).alias(_TITLE))
        .filter(pl.col(_TITLE).is_not_null() & (pl.col(_TITLE) != ""))
        .group_by(USER_IDX, maintain_order=True)
        .agg(pl.col(_TITLE).head(config.user_history_titles))
    )
    for user_idx, user_titles in recent.iter_rows():
        histories[user_idx] = user_titles
    return histories


def _history_title_column(dataset: Dataset, title_column: str) -> str | None:
    if title_column in dataset.items.columns:
        return title_column
    return dataset.item_text_columns[0] if dataset.item_text_columns else None


def _title_first(columns: list[str], title_column: str) -> list[str]:
    return sorted(columns, key=lambda c: c != title_column)  # stable: the rest keep their order


def _document(frame: pl.DataFrame, columns: list[str], title_column: str | None) -> pl.Expr:
    """One expression joining the columns as sentences; null or blank values are skipped."""
    pieces = []
    for column in columns:
        if frame.schema[column] == pl.List(pl.Utf8):
            value = _clean(pl.col(column).list.join(", "))
        else:
            value = _clean(pl.col(column).cast(pl.Utf8))
        if column != title_column and column not in PROSE_COLUMNS:
            label = column.replace("_", " ").capitalize()
            value = pl.lit(f"{label}: ") + value.str.replace_all(LIST_SEPARATOR, ", ")
        # a null value stays null through + and is skipped by concat_str
        pieces.append(pl.when(value.str.contains(r"[.!?]$")).then(value).otherwise(value + "."))
    if not pieces:
        return pl.repeat("", frame.height, dtype=pl.Utf8).alias(_TITLE)
    return pl.concat_str(pieces, separator=" ", ignore_nulls=True).alias(_TITLE)


def _clean(value: pl.Expr) -> pl.Expr:
    """Whitespace collapsed and stripped; blank becomes null."""
    value = value.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value)


def _by_index(frame: pl.DataFrame, idx_column: str, n: int, source: str) -> pl.DataFrame:
    """Rows in idx order 0..n-1, so that position == idx (the Dataset contract, checked)."""
    frame = frame.sort(idx_column)
    wrong = frame.with_row_index("__position").filter(pl.col(idx_column) != pl.col("__position"))
    if frame.height != n or wrong.height:
        first = wrong.head(3).select(idx_column).to_dicts()
        raise ValueError(
            f"{source or 'dataset'}: expected {idx_column} to be 0..{n - 1}, one row each; "
            f"found {frame.height} rows, first out of place: {first}"
        )
    return frame


def _check_range(interactions: pl.DataFrame, column: str, n: int, source: str) -> None:
    bad = interactions.filter((pl.col(column) < 0) | (pl.col(column) >= n))
    if bad.height:
        raise ValueError(
            f"{source or 'interactions'}: expected {column} in 0..{n - 1}, found "
            f"{bad.height} rows outside it, first: {bad.head(3).to_dicts()}"
        )
