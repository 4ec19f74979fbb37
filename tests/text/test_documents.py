"""Item and user documents and text hashes, on small Datasets built by hand."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.config import TextConfig
from recsys.data.dataset import Dataset
from recsys.ids import IdMap
from recsys.schema import INTERACTION_DTYPES, ITEM_ID, ITEM_IDX, ROW, TIMESTAMP, USER_ID, USER_IDX
from recsys.text.documents import (
    item_documents,
    text_hash,
    truncate_at_word,
    user_document,
    user_documents,
)

ITEMS = {
    "title": ["The Matrix", "Amélie", None, "Dr. No"],
    "description": ["Hackers  and\nkung fu", None, "No title here!", "A spy, a villain"],
    "categories": ["Action|Sci-Fi", "Romance", "", "Spy ; Classic"],
}
PROFILES = ["Loves sci-fi", None, "  "]
# (user_idx, item_idx, timestamp, row): user 0 sees item 0 twice; items 3 and 0 tie at t=300
INTERACTIONS = [(0, 0, 100, 0), (0, 1, 200, 1), (0, 0, 300, 2), (0, 3, 300, 3), (1, 2, 50, 4)]
INTERACTIONS += [(1, 1, 40, 5)]


def _dataset(items=ITEMS, profiles=PROFILES, interactions=INTERACTIONS, item_columns=None):
    n_items, n_users = len(next(iter(items.values()))), len(profiles)
    item_ids = [f"i{i}" for i in range(n_items)]
    user_ids = [f"u{u}" for u in range(n_users)]
    items_frame = pl.DataFrame({ITEM_IDX: list(range(n_items)), ITEM_ID: item_ids, **items})
    users_frame = pl.DataFrame(
        {USER_IDX: list(range(n_users)), USER_ID: user_ids, "profile": profiles},
        schema_overrides={USER_IDX: pl.Int32, "profile": pl.Utf8},
    )
    rows = pl.DataFrame(
        [(u, i, t, 1.0, r) for u, i, t, r in interactions],
        schema=list(INTERACTION_DTYPES.items()),
        orient="row",
    ).sort(USER_IDX, TIMESTAMP, ROW)
    return Dataset(
        items=items_frame.with_columns(pl.col(ITEM_IDX).cast(pl.Int32)),
        users=users_frame,
        interactions=rows,
        item_map=IdMap(item_ids),
        user_map=IdMap(user_ids),
        item_text_columns=list(items) if item_columns is None else item_columns,
        user_text_columns=["profile"],
        source="hand-built",
    )


def test_item_documents_join_columns_title_first_skipping_nulls():
    docs = item_documents(_dataset(), TextConfig())
    assert docs == [
        "The Matrix. Hackers and kung fu. Categories: Action, Sci-Fi.",
        "Amélie. Categories: Romance.",
        "No title here!",
        "Dr. No. A spy, a villain. Categories: Spy, Classic.",
    ]


def test_title_goes_first_whatever_the_column_order():
    reordered = _dataset(item_columns=["categories", "description", "title"])
    assert item_documents(reordered, TextConfig())[1] == "Amélie. Categories: Romance."


def test_list_and_non_text_columns_are_labelled():
    items = {"title": ["A", "B"], "tags": [["x", "y z"], []], "release_year": [1999, None]}
    docs = item_documents(_dataset(items=items, interactions=[]), TextConfig())
    assert docs == ["A. Tags: x, y z. Release year: 1999.", "B."]


def test_no_text_columns_gives_empty_documents():
    docs = item_documents(_dataset(item_columns=[]), TextConfig())
    assert docs == ["", "", "", ""]


def test_item_documents_are_truncated_at_a_word_boundary():
    words = " ".join(f"word{i}" for i in range(40))  # 309 chars
    dataset = _dataset(items={"title": ["Short", "Long"], "description": ["x", words]})
    docs = item_documents(dataset, TextConfig(max_item_chars=50))
    assert docs[0] == "Short. x."
    assert len(docs[1]) <= 50 and docs[1] == "Long. word0 word1 word2 word3 word4 word5 word6"


def test_user_documents_profile_then_newest_distinct_titles():
    dataset = _dataset()
    docs = user_documents(dataset, dataset.interactions, TextConfig())
    # user 0: newest first by (timestamp, row): Dr. No (t300 row3), The Matrix (t300 row2; its
    # older repeat not again), Amélie; user 1: item 2 has no title, so only Amélie
    assert docs == [
        "Loves sci-fi. Recent: Dr. No; The Matrix; Amélie.",
        "Recent: Amélie.",
        "",
    ]


def test_user_documents_read_only_the_given_interactions():
    dataset = _dataset()
    train = dataset.interactions.filter(pl.col(TIMESTAMP) < 300)  # e.g. a split's train part
    assert (
        user_documents(dataset, train, TextConfig())[0]
        == "Loves sci-fi. Recent: Amélie; The Matrix."
    )
    config = TextConfig(user_history_titles=2)
    assert user_documents(dataset, dataset.interactions, config)[0] == (
        "Loves sci-fi. Recent: Dr. No; The Matrix."
    )
    no_history = TextConfig(user_history_titles=0)
    assert user_documents(dataset, dataset.interactions, no_history) == ["Loves sci-fi.", "", ""]


def test_long_profile_leaves_room_for_whole_titles():
    profile = "I read " + " ".join(["everything"] * 40)
    dataset = _dataset(profiles=[profile, None, None])
    doc = user_documents(dataset, dataset.interactions, TextConfig(max_user_chars=60))[0]
    assert len(doc) <= 60
    head, history = doc.split(" Recent: ")
    assert head == "I read everything everything."  # cut to half the room, sentence closed
    assert history == "Dr. No; The Matrix."  # Amélie did not fit, and is not cut in half


@pytest.mark.parametrize("max_chars", [60, 512])
def test_composed_user_document_matches_the_dataset_one(max_chars):
    """Serving builds documents from a request; they must read exactly like training's."""
    profile = "Loves   sci-fi\n and " + " ".join(["noir"] * 20)
    dataset = _dataset(profiles=[profile, None, "  "])
    config = TextConfig(max_user_chars=max_chars)
    expected = user_documents(dataset, dataset.interactions, config)
    titles = [["Dr. No", "The Matrix", "The Matrix", "Amélie"], ["", "Amélie"], []]
    for user, (text, history) in enumerate(zip([profile, None, "  "], titles, strict=True)):
        assert user_document(text, history, max_chars) == expected[user]


def test_out_of_range_interactions_are_a_clear_error():
    dataset = _dataset()
    bad = dataset.interactions.with_columns(pl.lit(7, dtype=pl.Int32).alias(ITEM_IDX))
    with pytest.raises(ValueError, match=r"hand-built: expected item_idx in 0\.\.3, found 6 rows"):
        user_documents(dataset, bad, TextConfig())


def test_items_not_indexed_by_row_are_a_clear_error():
    dataset = _dataset()
    broken = replace(dataset, items=dataset.items.with_columns(pl.lit(0).alias(ITEM_IDX)))
    with pytest.raises(ValueError, match=r"expected item_idx to be 0\.\.3, one row each"):
        item_documents(broken, TextConfig())


def test_text_hash_is_a_short_sha256():
    assert text_hash("abc") == "ba7816bf8f01cfea"  # the FIPS 180-2 test vector, first 16 chars
    assert text_hash("Amélie.") != text_hash("Amelie.")
    assert len(text_hash("")) == 16


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        ("alpha beta gamma", 16, "alpha beta gamma"),
        ("alpha beta gamma", 10, "alpha beta"),
        ("alpha beta gamma", 13, "alpha beta"),
        ("alpha beta, gamma", 11, "alpha beta"),
        ("abcdefghijklmnop", 5, "abcde"),  # one long word: a hard cut
    ],
)
def test_truncate_at_word_known_cases(text, max_chars, expected):
    assert truncate_at_word(text, max_chars) == expected


@given(st.text(alphabet="ab ,", max_size=60), st.integers(min_value=2, max_value=40))
def test_truncate_at_word_is_a_short_prefix_ending_at_a_boundary(text, max_chars):
    out = truncate_at_word(text, max_chars)
    assert len(out) <= max_chars and text.startswith(out)
    if out != text and " " in text[max_chars // 2 : max_chars + 1]:
        assert text[len(out)] in " ,;:-"  # the cut never splits a word


def test_user_documents_scale_and_match_a_plain_python_reference():
    rng = np.random.default_rng(0)
    n_users, n_items, n = 5_000, 2_000, 100_000
    items = {"title": [f"Title {i}" for i in range(n_items)]}
    columns = (
        rng.integers(n_users, size=n),
        rng.integers(n_items, size=n),
        rng.integers(1_000, size=n),
    )
    rows = list(zip(*(c.tolist() for c in columns), range(n), strict=True))
    dataset = _dataset(items=items, profiles=[None] * n_users, interactions=rows)
    started = time.perf_counter()
    docs = user_documents(dataset, dataset.interactions, TextConfig())
    elapsed = time.perf_counter() - started
    by_user = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    for user in rng.choice(n_users, 50, replace=False):
        newest = sorted(by_user[user], key=lambda r: (-r[2], -r[3]))
        titles = list(dict.fromkeys(items["title"][r[1]] for r in newest))[:10]
        assert docs[user] == (f"Recent: {'; '.join(titles)}." if titles else "")
    assert elapsed < 10.0, f"user_documents took {elapsed:.1f}s for {n} interactions"
