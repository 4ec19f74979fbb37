"""Simulated live traffic with a known answer: exposure logs and the clicks that followed.

Users are split between two variants by a seeded coin (or a planted share); each has a
heavy-tailed number of exposures and an own click propensity, so a heavy user's exposures move
together (the case an exposure-level test gets wrong). Anonymous exposures carry no user id and,
like real ones, can never be matched to a click.
"""

from __future__ import annotations

import numpy as np
import polars as pl

T0 = 1_700_000_000
HOUR, DAY = 3600, 86400
WINDOW = DAY
N_ITEMS = 5000


def traffic(
    n_users: int = 300,
    click_a: float = 0.15,
    click_b: float = 0.15,
    share_b: float = 0.5,
    anonymous_a: int = 0,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
    bundles: tuple[str, str] = ("vA", "vB"),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(exposures, interactions). click_*: the mean click propensity of a variant's users
    (Beta-distributed per user); share_b: the chance a user is routed to B."""
    rng = np.random.default_rng(seed)
    in_b = rng.random(n_users) < share_b  # (users,)
    n_exp = 1 + rng.geometric(0.12, n_users)  # (users,) mean ~8, a long tail of heavy users
    mean = np.where(in_b, click_b, click_a)  # (users,)
    propensity = rng.beta(0.6 * mean / (1 - mean), 0.6, n_users)  # (users,) Beta with that mean
    user = np.repeat(np.arange(n_users), n_exp)  # (exposures,)
    time = T0 + rng.integers(0, 10 * DAY, user.size)  # (exposures,)
    items = rng.integers(0, N_ITEMS, (user.size, 10))  # (exposures, 10)
    clicked = rng.random(user.size) < propensity[user]  # (exposures,)
    variant = np.where(in_b[user], names[1], names[0])
    exposures = pl.DataFrame(
        {
            "time": time,
            "user_id": _ids("u", user),
            "variant": variant,
            "bundle": np.where(in_b[user], bundles[1], bundles[0]),
            "item_ids": _id_lists("i", items),
        }
    )
    clicks = pl.DataFrame(
        {
            "user_id": _ids("u", user[clicked]),
            "item_id": _ids("i", items[clicked, rng.integers(0, 10, clicked.sum())]),
            "timestamp": time[clicked] + rng.integers(0, WINDOW // 2, clicked.sum()),
        }
    )
    end = pl.DataFrame({"user_id": ["late"], "item_id": ["i0"], "timestamp": [T0 + 12 * DAY]})
    interactions = pl.concat([clicks, end])  # complete until T0 + 12 days
    if anonymous_a:
        exposures = pl.concat([exposures, anonymous(anonymous_a, names[0], bundles[0], rng)])
    return exposures.sort("time"), interactions


def anonymous(n: int, variant: str, bundle: str, rng: np.random.Generator) -> pl.DataFrame:
    """n exposures without a user id (anonymous POST requests) in one variant."""
    return pl.DataFrame(
        {
            "time": T0 + rng.integers(0, 10 * DAY, n),
            "user_id": pl.Series([None] * n, dtype=pl.Utf8),
            "variant": [variant] * n,
            "bundle": [bundle] * n,
            "item_ids": _id_lists("i", rng.integers(0, N_ITEMS, (n, 10))),
        }
    )


def _ids(prefix: str, numbers: np.ndarray) -> pl.Series:
    """(n,) ints -> 'u17'-style string ids."""
    return pl.select(pl.lit(prefix) + pl.Series(numbers).cast(pl.Utf8)).to_series()


def _id_lists(prefix: str, numbers: np.ndarray) -> pl.Series:
    """(n, m) ints -> n lists of m string ids."""
    flat = _ids(prefix, numbers.ravel())
    return flat.reshape((numbers.shape[0], numbers.shape[1])).arr.to_list()
