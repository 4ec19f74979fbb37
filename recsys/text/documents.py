"""Text stage: item documents, user profiles and user documents (profile + recent titles).

Reads the text columns of Dataset.items / Dataset.users and an interactions frame; writes nothing.
The encoder reads the documents; `text_hash` keys its embedding cache. A user document is written
one way only, `UserDocuments(profile, history)`: the BERT user tower reads exactly these in
training (every user and position) and when serving (every query), and `user_documents` gives
each user's document from an interactions frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.config import TextConfig
from recsys.data.dataset import Dataset
from recsys.schema import ITEM_ID, ITEM_IDX, ROW, TIMESTAMP, USER_IDX

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


def documents_of(
    rows: Sequence[dict[str, str | None]], columns: Sequence[str], config: TextConfig
) -> list[str]:
    """Item documents of items given as {column: text} (the API's overlay items), written exactly
    as item_documents writes a catalog's: `columns` are the catalog's text columns."""
    columns = [c for c in columns if c != ITEM_ID]
    frame = pl.DataFrame(
        {c: [row.get(c) for row in rows] for c in columns}, schema=dict.fromkeys(columns, pl.Utf8)
    )
    ordered = _title_first(list(columns), config.title_column)
    docs = frame.select(_document(frame, ordered, config.title_column))[_TITLE]
    return [truncate_at_word(doc, config.max_item_chars) for doc in docs.fill_null("").to_list()]


def profile_texts(dataset: Dataset) -> list[str | None]:
    """Each user's profile: the user text columns joined, None when all are empty."""
    if not dataset.user_text_columns:
        return [None] * dataset.n_users
    rows = dataset.users.select(dataset.user_text_columns).rows()
    joined = [
        ". ".join(str(v).strip() for v in row if v is not None and str(v).strip()) for row in rows
    ]
    return [text or None for text in joined]


def item_titles(dataset: Dataset, config: TextConfig) -> list[str]:
    """Per item_idx, the title a user document names the item by: the title column (else the
    first item text column), whitespace collapsed; "" where the item has none."""
    column = _history_title_column(dataset, config.title_column)
    if column is None:
        return [""] * dataset.n_items
    items = _by_index(dataset.items, ITEM_IDX, dataset.n_items, dataset.source)
    titles = items.select(_clean(pl.col(column).cast(pl.Utf8)).alias(_TITLE))[_TITLE]
    return titles.fill_null("").to_list()


def user_document(profile: str | None, titles_newest_first: Sequence[str], max_chars: int) -> str:
    """A user document from a profile and titles given directly (newest first): the profile
    (whitespace collapsed, ending its sentence), then "Recent: A; B." A repeated title counts
    once, at its newest place; blank titles are skipped."""
    profile = " ".join((profile or "").split())
    if profile and profile[-1] not in ".!?":
        profile += "."
    titles = [" ".join(title.split()) for title in titles_newest_first if title and title.strip()]
    return _user_document(profile, list(dict.fromkeys(titles)), max_chars)


@dataclass(frozen=True)
class UserDocuments:
    """How the document of a user with a profile and a history is written: the profile, then
    the titles of the `n_titles` newest distinct titled items of the history (item_idx, oldest
    first), newest first, within `max_chars`. One instance serves training and serving alike."""

    titles: Sequence[str]  # per item_idx; "" = untitled
    n_titles: int
    max_chars: int

    @classmethod
    def for_dataset(cls, dataset: Dataset, config: TextConfig) -> UserDocuments:
        titles = item_titles(dataset, config)
        return cls(titles, config.user_history_titles, config.max_user_chars)

    def recent_titles(self, history: np.ndarray) -> list[str]:
        """Titles of the newest distinct titled items of `history`, newest first."""
        out: list[str] = []
        seen: set[int] = set()
        for item in np.asarray(history, dtype=np.int64)[::-1].tolist():
            if len(out) == self.n_titles:
                break
            if item not in seen:
                seen.add(item)
                if self.titles[item]:
                    out.append(self.titles[item])
        return out

    def __call__(self, profile: str | None, history: np.ndarray) -> str:
        return user_document(profile, self.recent_titles(history), self.max_chars)


def user_documents(dataset: Dataset, interactions: pl.DataFrame, config: TextConfig) -> list[str]:
    """One document per user_idx: the profile text, then the titles of the user's most recent
    `user_history_titles` distinct items in `interactions`, newest first (UserDocuments).

    With both present, the profile gets at most half of max_user_chars so history always shows;
    titles are dropped whole, never cut.
    """
    _check_range(interactions, USER_IDX, dataset.n_users, dataset.source)
    _check_range(interactions, ITEM_IDX, dataset.n_items, dataset.source)
    documents = UserDocuments.for_dataset(dataset, config)
    histories = _histories(interactions, dataset.n_users)
    return [documents(p, h) for p, h in zip(profile_texts(dataset), histories, strict=True)]


def _histories(interactions: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """Per user_idx, the item_idx of `interactions` oldest first (by TIMESTAMP, then ROW)."""
    out = [np.zeros(0, dtype=np.int64) for _ in range(n_users)]
    order = [c for c in (TIMESTAMP, ROW) if c in interactions.columns]
    grouped = (
        interactions.select(USER_IDX, ITEM_IDX, *order)
        .sort([USER_IDX, *order])
        .group_by(USER_IDX, maintain_order=True)
        .agg(pl.col(ITEM_IDX))
    )
    for user_idx, items in grouped.iter_rows():
        out[user_idx] = np.asarray(items, dtype=np.int64)
    return out


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
