"""A tiny known-answer world for encoder tests: items about topics, users who stick to one topic.

Every word is in tests/fixtures/tiny_bert/vocab.txt, so the tiny BERT sees no [UNK]. Users pick
items of their own topic in a fixed cyclic order, so the next item is predictable from the text
(topic) and from the sequence (order); half of the users have a profile naming their topic.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.config import EncoderConfig, SplitConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split, split_interactions
from recsys.ids import IdMap
from recsys.schema import ITEM_ID, ITEM_IDX, ROW, TIMESTAMP, USER_ID, USER_IDX, WEIGHT

TOPICS = {
    "action": ["hero", "villain", "car", "race", "fire"],
    "romance": ["love", "heart", "prince", "princess", "friend"],
    "horror": ["ghost", "zombie", "vampire", "dark", "night"],
    "space": ["robot", "alien", "ship", "star", "moon"],
    "cooking": ["food", "kitchen", "red", "summer", "family"],
    "jazz": ["music", "song", "blue", "city", "rock"],
}
COLORS = ["red", "blue", "green", "black", "white", "gold", "silver", "purple"]


def make_world(
    n_users: int = 48, items_per_topic: int = 12, length: int = 10, seed: int = 0
) -> tuple[Dataset, Split]:
    """(Dataset, leave-last-one-out Split with one valid and one test item per user); a user
    never repeats an item (length <= items_per_topic)."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    titles, descriptions, topic_of = [], [], []
    for t, topic in enumerate(topics):
        for n in range(items_per_topic):
            words = TOPICS[topic]
            titles.append(f"the {COLORS[n % len(COLORS)]} {words[n % len(words)]}")
            descriptions.append(f"a {topic} story about the {words[(n + 2) % len(words)]}")
            topic_of.append(t)
    n_items = len(titles)
    items = pl.DataFrame(
        {
            ITEM_IDX: pl.Series(range(n_items), dtype=pl.Int32),
            ITEM_ID: [f"i{n}" for n in range(n_items)],
            "title": titles,
            "description": descriptions,
        }
    )
    profiles, rows = [], []
    for u in range(n_users):
        t = u % len(topics)
        profiles.append(f"a fan of {topics[t]}" if u % 2 == 0 else None)
        offset = int(rng.integers(items_per_topic))
        for step in range(length):
            item = t * items_per_topic + (offset + step) % items_per_topic
            rows.append((u, item, 1_000_000 + 100 * step + u, 1.0, len(rows)))
    users = pl.DataFrame(
        {
            USER_IDX: pl.Series(range(n_users), dtype=pl.Int32),
            USER_ID: [f"u{u}" for u in range(n_users)],
            "profile": pl.Series(profiles, dtype=pl.Utf8),
        }
    )
    interactions = pl.DataFrame(
        rows, schema=[USER_IDX, ITEM_IDX, TIMESTAMP, WEIGHT, ROW], orient="row"
    ).cast({USER_IDX: pl.Int32, ITEM_IDX: pl.Int32, TIMESTAMP: pl.Int64, WEIGHT: pl.Float32})
    dataset = Dataset(
        items=items,
        users=users,
        interactions=interactions.sort([USER_IDX, TIMESTAMP, ROW]),
        item_map=IdMap(items[ITEM_ID].to_list()),
        user_map=IdMap(users[USER_ID].to_list()),
        item_text_columns=["title", "description"],
        user_text_columns=["profile"],
        source="encoder test world",
    )
    return dataset, split_interactions(dataset.interactions, SplitConfig(n_valid=1, n_test=1))


def encoder_config(bert: str, **overrides) -> EncoderConfig:
    """A tiny encoder config for this world on the CPU (the tiny BERT at `bert`); overrides win."""
    base = dict(
        model_name_or_path=bert, dim=16, seq_heads=2, history_len=8, max_length=16,
        user_max_length=32, device="cpu",
    )  # fmt: skip
    return EncoderConfig(**{**base, **overrides})


def saved_encoder_ndcg(path, world: tuple[Dataset, Split]) -> float:
    """Validation NDCG@10 of the encoder saved at `path`, loaded as serving loads it (item
    vectors from the item texts plus their id vectors, users from their train histories and
    profiles): what the training's best epoch must have scored."""
    from recsys.config import TextConfig
    from recsys.encoder.model import TwoTowerEncoder
    from recsys.text.documents import item_documents, profile_texts
    from recsys.training.examples import user_sequences
    from recsys.training.validation import held_out, ranking_metrics

    dataset, split = world
    loaded = TwoTowerEncoder.load(path)
    items = loaded.encode_items(
        item_documents(dataset, TextConfig()), item_ids=dataset.item_map.ids
    )
    valid = held_out(user_sequences(split.train, dataset.n_users), split.valid)
    profiles = [profile_texts(dataset)[u] for u in valid.users]
    users = loaded.encode_users(valid.histories, items, profiles)
    return ranking_metrics(users, items, valid)["ndcg"]
