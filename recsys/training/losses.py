"""Training stage: training losses over (user vector, next item vector) pairs. Pure torch, no I/O.

Both take L2-normalised vectors; scores are cosines divided by a temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_loss(
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    seen: torch.Tensor | None = None,
    left_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each user state against the whole catalog (exact, no sampling bias).

    users (n, dim), items (n_items, dim), targets (n,) item_idx. Affordable when item vectors
    are cheap (frozen path), where it trains better than sampled negatives. seen (n, h) item_idx
    (-1 = none) are left out of each row's softmax, as ranking leaves a user's seen items out;
    the target itself is never left out. left_out (n_items,) bool: items out of every row's
    softmax (e.g. never interacted with in training)."""
    logits = users @ items.T / temperature  # (n, n_items)
    if left_out is None and seen is None:
        return F.cross_entropy(logits, targets)
    if left_out is not None:  # one mask, one masked_fill: this runs on (n, n_items) every step
        hide = left_out.unsqueeze(0).expand_as(logits).clone()
    else:
        hide = torch.zeros_like(logits, dtype=torch.bool)
    if seen is not None:
        hide.scatter_(1, torch.where(seen >= 0, seen, targets.unsqueeze(1)), True)  # -1 -> target
    hide[torch.arange(len(targets), device=targets.device), targets] = False
    logits = logits.masked_fill(hide, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, targets)


def sampled_softmax_loss(
    users: torch.Tensor,
    positives: torch.Tensor,
    positive_idx: torch.Tensor,
    temperature: float,
    log_q: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    negative_idx: torch.Tensor | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch sampled softmax with logQ correction (Yi et al., RecSys 2019).

    users (b, dim) and positives (b, dim) are row-aligned pairs; every other row's positive is a
    negative. positive_idx (b,) are their catalog item_idx: a column holding the same item as the
    row's own positive is masked, so an item that is popular in the batch is never its own
    negative. log_q (b,) = log probability that each positive appears in a batch (popularity);
    subtracting it removes the popularity bias of in-batch negatives. Optional extra (hard)
    negatives (m, dim) with item_idx (m,) are appended uncorrected (they are not sampled by
    popularity) and masked the same way when they equal the positive. seen (b, h) item_idx
    (-1 = none): columns holding an item the row's user has already seen are masked too."""
    column_idx = positive_idx
    logits = users @ positives.T / temperature  # (b, b)
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    if negatives is not None and negative_idx is not None and len(negative_idx):
        extra = users @ negatives.T / temperature  # (b, m)
        logits = torch.cat([logits, extra], dim=1)  # (b, b + m)
        column_idx = torch.cat([positive_idx, negative_idx])
    rows = torch.arange(users.shape[0], device=users.device)
    same = column_idx.unsqueeze(0) == positive_idx.unsqueeze(1)  # (b, columns)
    if seen is not None:
        hits = column_idx.view(1, -1, 1) == seen.unsqueeze(1)  # (b, columns, h)
        same = same | hits.any(dim=-1)
    same[rows, rows] = False  # the diagonal is the positive itself
    logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, rows)
