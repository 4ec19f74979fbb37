"""Ground: the registry of recommender sources and cold-start paths — the one list the config's
`blend.sources`, the blend's path rules, the API response and its schema are derived from.

A query takes one cold-start path by what it carries (Gorse's fallback chain): a known user,
recent item ids, profile text, both, or nothing. Each source says which paths it may serve.
Adding a source is an entry here plus how the nightly fits it (recsys.pipeline.fit.FRAME_SOURCES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PATH_KNOWN = "known"  # a user the bundle knows
PATH_HISTORY = "history"  # unknown user, recent item ids
PATH_PROFILE = "profile"  # unknown user, profile text only
PATH_BOTH = "history+profile"
PATH_POPULARITY = "popularity"  # nothing to go on, or only the fallback source could score
PATHS = (PATH_KNOWN, PATH_HISTORY, PATH_PROFILE, PATH_BOTH, PATH_POPULARITY)
PathName = Literal[PATHS]


@dataclass(frozen=True)
class Source:
    """One recommender source: its name (config, bundle directory, API field), the cold-start
    paths whose queries it may score, and what its score is (the API documentation)."""

    name: str
    paths: frozenset[str]
    description: str
    default: bool = True  # in the config's default blend.sources (else opt-in)
    needs: tuple[str, ...] = ()  # sources it reads from, which blend.sources must name too


REGISTRY: tuple[Source, ...] = (
    Source(
        "text",
        frozenset({PATH_KNOWN, PATH_HISTORY, PATH_BOTH, PATH_PROFILE}),
        "cosine of the text towers' user and item vectors (+ the cold-item text prior)",
    ),
    Source(
        "collab",  # collaborative fold-in needs item ids: not the profile-only path
        frozenset({PATH_KNOWN, PATH_HISTORY, PATH_BOTH}),
        "collaborative (LightFM or ALS) score",
    ),
    Source("popularity", frozenset(PATHS), "interaction count"),
    Source(
        "neighbors",  # item-to-item: scores from a history's items, none from profile text
        frozenset({PATH_KNOWN, PATH_HISTORY, PATH_BOTH}),
        "item-to-item RP3beta neighbour weights of the history's items, summed",
    ),
    Source(
        "transitions",  # item-to-item in time order: from a history's items, as neighbors
        frozenset({PATH_KNOWN, PATH_HISTORY, PATH_BOTH}),
        "how often each item followed the history's items in users' logs (newest counting most)",
    ),
    Source(
        "text_neighbors",  # item-to-item by text: from a history's items, cold items included
        frozenset({PATH_KNOWN, PATH_HISTORY, PATH_BOTH}),
        "cosine of the item's text vector to the closest of the history's items (newest "
        "counting most)",
        default=False,
        needs=("text",),
    ),
)
SOURCES: tuple[str, ...] = tuple(source.name for source in REGISTRY)  # in report order
SourceName = Literal[SOURCES]
DEFAULT_SOURCES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.default)  # blend.sources
FALLBACK = "popularity"  # the source of last resort: a query only it scores takes its path
BY_NAME = {source.name: source for source in REGISTRY}


def serves(source: str, path: str) -> bool:
    """May `source` score a query on cold-start `path`?"""
    return path in BY_NAME[source].paths
