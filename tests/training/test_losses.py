"""Losses: hand-computed softmax cases, duplicate masking, logQ, hard negatives, learning."""

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.training.losses import full_softmax_loss, sampled_softmax_loss


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_full_softmax_matches_hand_computed_cross_entropy():
    users = _unit([1.0, 0.0])
    items = _unit([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0])
    loss = full_softmax_loss(users, items, torch.tensor([0]), temperature=0.5)
    logits = [1 / 0.5, 0 / 0.5, -1 / 0.5]
    expected = -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_full_softmax_leaves_seen_items_out_but_never_the_target():
    users = _unit([1.0, 0.0], [0.0, 1.0])
    items = _unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0])
    seen = torch.tensor([[2, -1], [1, 3]])  # row 1 has "seen" its own target (a repeat)
    loss = full_softmax_loss(users, items, torch.tensor([0, 1]), 1.0, seen)
    s = users @ items.T  # (2, 4)
    row0 = -s[0, 0] + torch.logsumexp(s[0, [0, 1, 3]], 0)
    row1 = -s[1, 1] + torch.logsumexp(s[1, [0, 1, 2]], 0)
    assert loss.item() == pytest.approx(float((row0 + row1) / 2), rel=1e-6)


def test_full_softmax_leaves_out_never_seen_items():
    users = _unit([1.0, 0.0], [0.0, 1.0])
    items = _unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0])
    left_out = torch.tensor([False, False, True, False])  # item 2: no training interaction
    loss = full_softmax_loss(users, items, torch.tensor([0, 2]), 1.0, None, left_out)
    s = users @ items.T
    row0 = -s[0, 0] + torch.logsumexp(s[0, [0, 1, 3]], 0)
    row1 = -s[1, 2] + torch.logsumexp(s[1, [0, 1, 2, 3]], 0)  # a target is never left out
    assert loss.item() == pytest.approx(float((row0 + row1) / 2), rel=1e-6)


def test_sampled_softmax_uses_other_rows_as_negatives():
    users = _unit([1.0, 0.0], [0.0, 1.0])
    positives = _unit([1.0, 0.0], [1.0, 1.0])
    loss = sampled_softmax_loss(users, positives, torch.tensor([3, 7]), temperature=1.0)
    s = users @ positives.T  # (2, 2)
    expected = [-s[r, r] + torch.logsumexp(s[r], 0) for r in range(2)]
    assert loss.item() == pytest.approx(float(sum(expected) / 2), rel=1e-6)


def test_duplicate_positive_is_never_its_own_negative():
    # rows 0 and 1 share item 5: each row's softmax must only see item 5 once (its own column)
    users = _unit([1.0, 0.0], [0.9, 0.1], [0.0, 1.0])
    positives = _unit([1.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    loss = sampled_softmax_loss(users, positives, torch.tensor([5, 5, 2]), temperature=0.5)
    s = users @ positives.T / 0.5  # (3, 3)
    row0 = -s[0, 0] + torch.logsumexp(s[0, [0, 2]], 0)
    row1 = -s[1, 1] + torch.logsumexp(s[1, [1, 2]], 0)
    row2 = -s[2, 2] + torch.logsumexp(s[2], 0)
    assert loss.item() == pytest.approx(float((row0 + row1 + row2) / 3), rel=1e-5)


def test_logq_correction_subtracts_log_probability_from_every_column():
    users = _unit([1.0, 0.0], [0.0, 1.0])
    positives = _unit([1.0, 0.0], [0.0, 1.0])
    log_q = torch.log(torch.tensor([0.5, 0.01]))
    loss = sampled_softmax_loss(users, positives, torch.tensor([0, 1]), 1.0, log_q)
    s = users @ positives.T - log_q.unsqueeze(0)
    expected = [-s[r, r] + torch.logsumexp(s[r], 0) for r in range(2)]
    assert loss.item() == pytest.approx(float(sum(expected) / 2), rel=1e-6)
    # a popular negative (high q) is discounted: the rare item's row loses less than uncorrected
    plain = sampled_softmax_loss(users, positives, torch.tensor([0, 1]), 1.0)
    assert loss.item() != pytest.approx(plain.item())


def test_hard_negatives_are_added_and_masked_when_equal_to_the_positive():
    users = _unit([1.0, 0.0], [0.0, 1.0])
    positives = _unit([1.0, 0.0], [0.0, 1.0])
    negatives = _unit([1.0, 0.1], [0.0, 1.0])  # item 9 (new), item 1 (= row 1's positive)
    loss = sampled_softmax_loss(
        users, positives, torch.tensor([0, 1]), 1.0, None, negatives, torch.tensor([9, 1])
    )
    s = torch.cat([users @ positives.T, users @ negatives.T], dim=1)  # (2, 4)
    row0 = -s[0, 0] + torch.logsumexp(s[0], 0)  # item 1 as a hard negative is fine for row 0
    row1 = -s[1, 1] + torch.logsumexp(s[1, [0, 1, 2]], 0)  # its own item masked in column 3
    assert loss.item() == pytest.approx(float((row0 + row1) / 2), rel=1e-5)


def test_sampled_softmax_leaves_the_users_seen_items_out():
    users = _unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    positives = _unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    idx = torch.tensor([4, 5, 6])
    seen = torch.tensor([[6, -1], [-1, -1], [4, 6]])  # row 2 has seen its own positive (6)
    loss = sampled_softmax_loss(users, positives, idx, 1.0, seen=seen)
    s = users @ positives.T  # (3, 3)
    row0 = -s[0, 0] + torch.logsumexp(s[0, [0, 1]], 0)
    row1 = -s[1, 1] + torch.logsumexp(s[1], 0)
    row2 = -s[2, 2] + torch.logsumexp(s[2, [1, 2]], 0)
    assert loss.item() == pytest.approx(float((row0 + row1 + row2) / 3), rel=1e-6)


@pytest.mark.parametrize("kind", ["full", "sampled"])
def test_loss_falls_while_learning_a_known_assignment(kind):
    # 16 users, 16 items, user u's next item is item u: learnable to near-zero loss
    torch.manual_seed(0)
    users = torch.nn.Parameter(torch.randn(16, 8))
    items = torch.nn.Parameter(torch.randn(16, 8))
    targets = torch.arange(16)
    optimizer = torch.optim.Adam([users, items], lr=0.05)
    losses = []
    for _ in range(60):
        u, v = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        if kind == "full":
            loss = full_softmax_loss(u, v, targets, 0.1)
        else:
            loss = sampled_softmax_loss(u, v[targets], targets, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    ranked = (F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T).argmax(dim=1)
    assert torch.equal(ranked, targets)
