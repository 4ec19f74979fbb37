"""Towers: shapes, unit norm, causality, padding invariance, profile slot, BERT towers, the
padded history input."""

import numpy as np
import torch

from recsys.encoder.backbone import load_backbone
from recsys.encoder.towers import (
    BertUserTower,
    ItemAdapter,
    SequenceUserTower,
    last_states,
    pad_histories,
)

DIM, HIDDEN = 16, 32


def _tower() -> SequenceUserTower:
    """A tower whose transformer path is live (a fresh one starts as the history mean)."""
    torch.manual_seed(0)
    tower = SequenceUserTower(DIM, HIDDEN, max_len=8, layers=2, heads=2, dropout=0.0)
    torch.nn.init.normal_(tower.out.weight, std=0.5)
    return tower.eval()


def test_a_fresh_tower_starts_as_the_mean_of_the_history():
    torch.manual_seed(0)
    tower = SequenceUserTower(DIM, HIDDEN, max_len=8, layers=2, heads=2, dropout=0.0).eval()
    items = torch.nn.functional.normalize(torch.randn(1, 3, DIM), dim=-1)
    states = tower(items, torch.ones(1, 3, dtype=torch.bool))  # (1, 4, DIM)
    expected = torch.nn.functional.normalize(items.cumsum(dim=1), dim=-1)  # zero-shot vectors
    torch.testing.assert_close(states[:, 1:], expected)


def test_item_adapter_outputs_unit_vectors():
    adapter = ItemAdapter(HIDDEN, DIM, dropout=0.1).eval()
    out = adapter(torch.randn(5, HIDDEN))
    assert out.shape == (5, DIM)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))


def test_sequence_tower_shape_and_norm():
    tower = _tower()
    states = tower(torch.randn(3, 6, DIM), torch.ones(3, 6, dtype=torch.bool))
    assert states.shape == (3, 7, DIM)  # profile slot + one state per item
    torch.testing.assert_close(states.norm(dim=-1), torch.ones(3, 7))


def test_sequence_tower_is_causal():
    tower = _tower()
    items = torch.randn(1, 6, DIM)
    changed = items.clone()
    changed[0, 4] += 1.0  # item 5 (position 5) changes: states 0..4 must not
    mask = torch.ones(1, 6, dtype=torch.bool)
    a, b = tower(items, mask), tower(changed, mask)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5], b[:, 5])


def test_padding_does_not_change_the_last_real_state():
    tower = _tower()
    items = torch.randn(1, 3, DIM)
    padded = torch.cat([items, torch.randn(1, 2, DIM)], dim=1)  # junk after the end
    mask = torch.tensor([[True, True, True, False, False]])
    short = last_states(tower(items, torch.ones(1, 3, dtype=torch.bool)), torch.tensor([3]))
    long = last_states(tower(padded, mask), torch.tensor([3]))
    torch.testing.assert_close(short, long)


def test_profile_slot_changes_the_state_only_when_present():
    tower = _tower()
    items, mask = torch.randn(2, 4, DIM), torch.ones(2, 4, dtype=torch.bool)
    profile = torch.randn(2, HIDDEN)
    without = tower(items, mask)
    absent = tower(items, mask, profile, torch.tensor([False, False]))
    present = tower(items, mask, profile, torch.tensor([True, False]))
    torch.testing.assert_close(without, absent)
    assert not torch.allclose(present[0], without[0])
    torch.testing.assert_close(present[1], without[1])


def test_bert_user_tower_over_the_tiny_bert(tiny_bert_dir):
    tokenizer, bert = load_backbone(tiny_bert_dir)
    batch = tokenizer(["the red robot", "a love story about the prince"], padding=True,
                      return_tensors="pt")  # fmt: skip
    hidden = bert.config.hidden_size
    user_tower = BertUserTower(bert, hidden, DIM).eval()
    users = user_tower(batch["input_ids"], batch["attention_mask"])
    assert users.shape == (2, DIM)
    torch.testing.assert_close(users.norm(dim=-1), torch.ones(2))
    assert user_tower.bert is bert  # the item tower's BERT, shared


def test_pad_histories_keeps_the_newest_items():
    idx, mask, lengths = pad_histories([np.array([1, 2, 3, 4]), np.array([], np.int64)], 3)
    assert idx.tolist() == [[2, 3, 4], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [False] * 3]
    assert lengths.tolist() == [3, 0]
