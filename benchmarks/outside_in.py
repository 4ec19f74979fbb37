"""Benchmark data for the outside-in protocol: reads a MovieLens directory, holds out each user's
newest interaction, writes the rest as a contract data directory (outside the repository) and
reads a `recsys recommend` output file back as ranked item_idx.

Variants: NAME (the whole set) and NAME-sparse8 (each user's newest 8 interactions, kept before
the hold-out). Order everywhere: (timestamp, file row), the product's own tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data import load_dataset
from recsys.data.dataset import Dataset
from recsys.data.split import ORDER
from recsys.pipeline.fit import EvalSet, eval_set
from recsys.schema import ITEM_ID, ITEM_IDX, ROW, TIMESTAMP, USER_ID, USER_IDX

SPARSE_SUFFIX = "-sparse8"
SPARSE_KEEP = 8
_POS, _LEN = "__pos", "__len"


@dataclass
class Variant:
    """One dataset variant: the product's view of it (REST) and the held-out test round."""

    name: str
    dataset: Dataset  # items, users and id maps of the whole MovieLens directory
    rest: pl.DataFrame  # what the product and every peer is given, ORDER-sorted
    test: pl.DataFrame  # each user's newest interaction (users with >= 2 interactions)
    tied: np.ndarray  # (n_test_users,) bool: the test timestamp equals the user's previous one

    @property
    def sparse(self) -> bool:
        return self.name.endswith(SPARSE_SUFFIX)

    def test_round(self) -> EvalSet:
        """Histories = REST, relevant = the held-out item; users in user_idx order."""
        return eval_set([self.rest], self.test, self.dataset.n_users)


def hold_out_newest(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rest, newest): each user's newest interaction by (timestamp, row), for users with at
    least two; users with one keep it in rest."""
    ranked = frame.sort(ORDER).with_columns(
        pl.int_range(pl.len()).over(USER_IDX).alias(_POS), pl.len().over(USER_IDX).alias(_LEN)
    )
    newest = (pl.col(_POS) == pl.col(_LEN) - 1) & (pl.col(_LEN) >= 2)
    return ranked.filter(~newest).drop(_POS, _LEN), ranked.filter(newest).drop(_POS, _LEN)


def load_variant(root: Path, name: str, max_users: int | None = None) -> Variant:
    """The variant `name` of the MovieLens directory under `root`; `max_users`: the first users
    by user_idx only (the --quick mode)."""
    base = name.removesuffix(SPARSE_SUFFIX)
    dataset = load_dataset(root / base)
    frame = dataset.interactions.sort(ORDER)
    if max_users is not None:
        frame = frame.filter(pl.col(USER_IDX) < max_users)
    if name.endswith(SPARSE_SUFFIX):
        frame = (
            frame.with_columns(pl.int_range(pl.len()).over(USER_IDX).alias(_POS))
            .filter(pl.col(_POS) >= pl.len().over(USER_IDX) - SPARSE_KEEP)
            .drop(_POS)
        )
    rest, test = hold_out_newest(frame)
    previous = rest.group_by(USER_IDX).agg(pl.col(TIMESTAMP).last().alias("prev"))
    tied = test.join(previous, on=USER_IDX, how="left").sort(USER_IDX)
    return Variant(name, dataset, rest, test, (tied[TIMESTAMP] == tied["prev"]).to_numpy())


def write_contract_dir(variant: Variant, directory: Path) -> None:
    """items.csv (every item, the loader's text columns), users.csv (when the set has user
    text) and interactions.csv (REST in the original file order, so ties break the same way)."""
    ds = variant.dataset
    directory.mkdir(parents=True, exist_ok=True)
    ds.items.select(ITEM_ID, *ds.item_text_columns).write_csv(directory / "items.csv")
    if ds.user_text_columns:
        ds.users.select(USER_ID, *ds.user_text_columns).write_csv(directory / "users.csv")
    rest = (
        variant.rest.sort(ROW)
        .join(ds.users.select(USER_IDX, USER_ID), on=USER_IDX, maintain_order="left")
        .join(ds.items.select(ITEM_IDX, ITEM_ID), on=ITEM_IDX, maintain_order="left")
    )
    rest.select(USER_ID, ITEM_ID, TIMESTAMP).write_csv(directory / "interactions.csv")
    check_contract_dir(variant, directory)


def check_contract_dir(variant: Variant, directory: Path) -> None:
    """The product's loader must read back the same item texts and each user's REST in the
    same order; anything else would make the comparison unfair."""
    ds, back = variant.dataset, load_dataset(directory)
    if back.item_text_columns != ds.item_text_columns:
        raise SystemExit(f"{directory}: item text columns {back.item_text_columns} != loader's")
    columns = [ITEM_ID, *ds.item_text_columns]
    if not back.items.select(columns).equals(ds.items.select(columns)):
        raise SystemExit(f"{directory}: items differ from what the MovieLens loader reads")
    if sequences(back, back.interactions) != sequences(ds, variant.rest):
        raise SystemExit(f"{directory}: the product reads another REST (or another order)")


def sequences(ds: Dataset, frame: pl.DataFrame) -> dict[str, list[str]]:
    """user_id -> item_ids in (timestamp, row) order."""
    named = frame.sort(ORDER).select(
        pl.col(USER_IDX).replace_strict(range(ds.n_users), ds.user_map.ids).alias(USER_ID),
        pl.col(ITEM_IDX).replace_strict(range(ds.n_items), ds.item_map.ids).alias(ITEM_ID),
    )
    grouped = named.group_by(USER_ID, maintain_order=True).agg(pl.col(ITEM_ID))
    return dict(zip(grouped[USER_ID].to_list(), grouped[ITEM_ID].to_list(), strict=True))


def read_recommendations(path: Path, variant: Variant, users: np.ndarray, k: int) -> np.ndarray:
    """(len(users), k) item_idx from a `recsys recommend` CSV (user_id, rank, item_id, score),
    ranks 1..k, padded with -1 where the product returned fewer."""
    ds = variant.dataset
    frame = pl.read_csv(path, schema_overrides={USER_ID: pl.Utf8, ITEM_ID: pl.Utf8})
    unknown = frame.filter(~pl.col(ITEM_ID).is_in(ds.item_map.ids))
    if unknown.height:
        raise SystemExit(f"{path}: item ids not in the catalog, e.g. {unknown.row(0)}")
    frame = frame.filter((pl.col("rank") >= 1) & (pl.col("rank") <= k)).with_columns(
        pl.col(USER_ID).replace_strict(ds.user_map.ids, range(ds.n_users), default=-1),
        pl.col(ITEM_ID).replace_strict(ds.item_map.ids, range(ds.n_items)),
    )
    row_of = np.full(ds.n_users, -1)
    row_of[users] = np.arange(users.size)
    ranked = np.full((users.size, k), -1, dtype=np.int64)
    rows = row_of[frame[USER_ID].to_numpy()]
    present = rows >= 0
    cols = frame["rank"].to_numpy()[present] - 1
    ranked[rows[present], cols] = frame[ITEM_ID].to_numpy()[present]
    missing = np.setdiff1d(users, frame[USER_ID].to_numpy())
    if missing.size:
        raise SystemExit(f"{path}: no recommendations for {missing.size} held-out users")
    return ranked


def seen_in_lists(ranked: np.ndarray, exclude: list[np.ndarray]) -> int:
    """How many recommended items the user already had in REST (the protocol excludes them)."""
    return int(sum(np.isin(row, items).sum() for row, items in zip(ranked, exclude, strict=True)))
