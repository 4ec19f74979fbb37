"""[neighbors] recency "auto": chosen on the fitted frame's own newest interactions — a strong
decay where the next item follows the newest one, the mildest where it follows the oldest."""

import numpy as np
import polars as pl

from recsys.config import NeighborsConfig
from recsys.schema import ITEM_IDX, ROW, TIMESTAMP, USER_IDX
from recsys.training.recency import RECENCY_GRID, choose_recency

N_USERS, N_ANCHORS, N_PARTNERS = 600, 300, 20


def _frame(anchor_first: bool) -> pl.DataFrame:
    """Each user: two episodes of four anchors (of N_ANCHORS) followed by one partner item
    (N_ANCHORS + anchor % N_PARTNERS): the partner of the episode's last anchor, or with
    anchor_first of its first. The held-out newest item is the second episode's partner; the
    first episodes teach the neighbours. Every anchor points to its partner, so only the order
    tells which of the four does."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(N_USERS):
        for _ in range(2):
            anchors = [int(a) for a in rng.choice(N_ANCHORS, 4, replace=False)]
            partner = N_ANCHORS + (anchors[0] if anchor_first else anchors[-1]) % N_PARTNERS
            rows += [(user, item) for item in [*anchors, partner]]
    users, items = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            USER_IDX: users,
            ITEM_IDX: items,
            TIMESTAMP: np.arange(len(rows)),
            ROW: np.arange(len(rows)),
        }
    )


def test_the_decay_follows_where_the_signal_is():
    n_items = N_ANCHORS + N_PARTNERS
    recent, scores = choose_recency(_frame(False), N_USERS, n_items, NeighborsConfig())
    assert recent <= 0.5 and scores[recent] > scores[0.9] + 0.05
    oldest, scores = choose_recency(_frame(True), N_USERS, n_items, NeighborsConfig())
    assert oldest == 0.9 and scores[0.9] > scores[0.3] + 0.05  # the mildest decay
    assert set(scores) == set(RECENCY_GRID)


def test_no_user_with_two_interactions_keeps_the_mildest_decay():
    frame = _frame(False).group_by(USER_IDX).first()
    assert choose_recency(frame, N_USERS, 320, NeighborsConfig()) == (RECENCY_GRID[0], {})
