"""Data stage: writes the text of the synthetic sample (titles, descriptions, profiles).

Reads the latent tastes recsys.data.sample drew and the words of recsys.data.sample_vocabulary;
returns the items and users tables that sample.py writes as CSV.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from recsys.data import sample_vocabulary as vocab
from recsys.schema import ITEM_ID, USER_ID

PROFILE_FRACTION = 0.6  # users who wrote a profile
STYLE_SHOWN = 0.8  # descriptions that state the item's style
SMALL_WORDS = frozenset({"a", "an", "and", "of", "the", "on", "to", "for", "in"})


def item_table(
    rng: np.random.Generator, tastes: np.ndarray, styles: np.ndarray, item_ids: list[str]
) -> pl.DataFrame:
    """items.csv: tastes (n_items, 2) subtopic indices (-1: none), styles (n_items,)."""
    per = vocab.SUBTOPICS_PER_TOPIC
    titles, descriptions, categories, seen = [], [], [], set()
    for (first, second), style in zip(tastes, styles, strict=True):
        primary = (vocab.TOPICS[first // per], vocab.TOPICS[first // per].subtopics[first % per])
        secondary = None
        if second >= 0:
            secondary = (
                vocab.TOPICS[second // per],
                vocab.TOPICS[second // per].subtopics[second % per],
            )
        for _ in range(5):  # a few tries at a title not used yet; duplicates happen in real data
            title = _title_case(_fill(rng, _pick(rng, vocab.TITLE_TEMPLATES), *primary))
            if title not in seen:
                break
        seen.add(title)
        titles.append(title)
        descriptions.append(_description(rng, primary, secondary, style))
        cats = [primary[0].name, primary[1].name] + ([secondary[0].name] if secondary else [])
        categories.append("|".join(cats))
    return pl.DataFrame(
        {ITEM_ID: item_ids, "title": titles, "description": descriptions, "categories": categories}
    )


_Taste = tuple[vocab.Topic, vocab.Subtopic]


def _description(
    rng: np.random.Generator, primary: _Taste, secondary: _Taste | None, style: int
) -> str:
    more = [vocab.MORE_TEMPLATES[i] for i in rng.permutation(len(vocab.MORE_TEMPLATES))]
    sentences = [_fill(rng, _pick(rng, vocab.OPENING_TEMPLATES), *primary)]
    if secondary is not None:
        sentences.append(_fill(rng, more.pop(), *secondary))
    if rng.random() < STYLE_SHOWN:
        sentences.append(_pick(rng, vocab.STYLES[style]))
    target = int(rng.integers(1, 4))  # 1-3 sentences, no template twice
    for _ in range(target - len(sentences)):
        sentences.append(_fill(rng, more.pop(), *primary))
    return " ".join(_sentence_case(s) for s in sentences)


def user_table(rng: np.random.Generator, tastes: np.ndarray, user_ids: list[str]) -> pl.DataFrame:
    """users.csv: a profile naming the strongest of the tastes (n_users, n_subtopics), or none."""
    per = vocab.SUBTOPICS_PER_TOPIC
    interests = [sub.interest for topic in vocab.TOPICS for sub in topic.subtopics]
    profiles: list[str | None] = []
    for taste in tastes:
        if rng.random() >= PROFILE_FRACTION:
            profiles.append(None)
            continue
        top = np.argsort(-taste, kind="stable")[:2]  # the two strongest subtopics
        a = interests[top[0]]
        b = interests[top[1]] if taste[top[1]] > 0 else vocab.TOPICS[top[0] // per].name.lower()
        template = _pick(rng, vocab.PROFILE_TEMPLATES)
        profiles.append(_sentence_case(template.format(a=a, b=b)))
    return pl.DataFrame(
        {USER_ID: user_ids, "profile": profiles}, schema_overrides={"profile": pl.Utf8}
    )


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(rng: np.random.Generator, template: str, topic: vocab.Topic, sub: vocab.Subtopic) -> str:
    nouns = [sub.nouns[i] for i in rng.choice(len(sub.nouns), 3, replace=False)]
    text = template.format(
        noun=nouns[0],
        noun2=nouns[1],
        noun3=nouns[2],
        adj=_pick(rng, topic.adjectives),
        gadj=_pick(rng, vocab.GENERIC_ADJECTIVES),
        kind=_pick(rng, topic.kinds),
        audience=_pick(rng, topic.audience),
        suffix=_pick(rng, vocab.GENERIC_TITLE_SUFFIXES),
    )
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)  # "a engaging" -> "an engaging"


def _title_case(text: str) -> str:
    words = text.split(" ")
    return " ".join(
        w if (i > 0 and w in SMALL_WORDS) or w[:1].isupper() else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]
