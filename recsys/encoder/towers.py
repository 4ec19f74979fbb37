"""Encoder stage: the two towers as torch modules — the item adapter and the user towers.

Reads pooled BERT features, token ids or padded item_idx histories (pad_histories); writes
L2-normalised vectors in one shared space. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import EncoderConfig
from recsys.encoder.backbone import mean_pool


class ItemAdapter(nn.Module):
    """Pooled BERT feature -> item vector: a projection plus a learned residual MLP, normalised.

    The projection keeps what the base model knows; the residual lets training move each item
    away from its text neighbours where interactions say so (MoRec's adapter idea)."""

    def __init__(self, hidden: int, dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, dim)
        self.residual = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.residual[-1].weight)  # start as a plain projection of the text vector
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.norm(pooled.float()))  # (n, dim)
        h = h + self.residual(self.dropout(h))
        return F.normalize(h, dim=-1)


class IdVectors(nn.Module):
    """A learned vector per item id, added to the item's text vector: the hybrid of text towers
    and SASRec's item-id embeddings. The text says what an item is; where an item has enough
    training interactions, its id vector learns what they add. Rows -1 (new or rarely seen
    items) keep the text vector alone. Starts at zero, so training starts from the text towers,
    and it is added after the adapter, so cached text vectors stay valid."""

    def __init__(self, n_ids: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(n_ids, dim))

    @classmethod
    def for_training(
        cls, id_rows: np.ndarray | None, id_vocab: Sequence[str] | None, n_items: int, dim: int
    ) -> tuple[IdVectors | None, np.ndarray | None, list[str] | None]:
        """A trainer's (table, rows (n_items,) int64, vocabulary) from its id_rows (each item's
        table row, -1: none) and id_vocab (each row's item id); (None, None, None) without a
        vocabulary (text-only towers)."""
        if not id_vocab:
            return None, None, None
        if id_rows is None or len(id_rows) != n_items:
            found = None if id_rows is None else len(id_rows)
            raise ValueError(f"id_rows: expected one row per item ({n_items}), found {found}")
        return cls(len(id_vocab), dim), np.asarray(id_rows, np.int64), list(id_vocab)

    def forward(self, vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """vectors (n, dim) unit text vectors, rows (n,) int64 table rows, -1 for none ->
        (n, dim) unit vectors."""
        known = (rows >= 0).unsqueeze(-1).to(vectors.dtype)  # (n, 1)
        # index_select, not table[rows]: its backward is an index_add, half the time of the
        # advanced-indexing backward on CPU (sorted index_put), for the same gradient
        added = torch.index_select(self.table, 0, rows.clamp(min=0)) * known  # (n, dim)
        return F.normalize(vectors + added, dim=-1)


class CausalBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention (nanoGPT's Block).

    Causal attention over right-padded rows never lets a real position see padding (padding
    only follows), so no padding mask is needed and SDPA's fused causal kernel runs."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, n, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, n, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        attended = attended.transpose(1, 2).reshape(batch, n, dim)  # (batch, n, dim)
        x = x + self.dropout(self.proj(attended))
        return x + self.dropout(self.ff(self.norm2(x)))


class SequenceUserTower(nn.Module):
    """SASRec-style causal transformer over the item vectors of a history.

    Layout of one row: [profile slot, item_1 .. item_n]. The output at position t summarises the
    profile and items 1..t and is trained to predict item t+1, so one sequence trains every
    position at once. The output is a learned residual over the mean of items 1..t (its output
    layer starts at zero), so training starts from the zero-shot user vector and improves on it.
    The profile slot holds a projected BERT vector of the profile text, or a learned start
    vector when the user has none (`profile_mask` False); its residual base is that vector."""

    def __init__(
        self, dim: int, hidden: int, max_len: int, layers: int, heads: int, dropout: float
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by seq_heads {heads}")
        self.max_len = max_len
        self.item_in = nn.Linear(dim, dim)
        self.profile_in = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))
        self.start = nn.Parameter(0.02 * torch.randn(1, 1, dim))  # slot 0 without a profile
        self.position = nn.Embedding(max_len + 1, dim)  # slot 0 is the profile
        self.blocks = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # start as the mean of the history (zero-shot), then learn
        nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        items: torch.Tensor,
        item_mask: torch.Tensor,
        profile: torch.Tensor | None = None,
        profile_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """items (batch, n, dim) right-padded, item_mask (batch, n) bool; profile (batch, hidden)
        pooled BERT features, profile_mask (batch,) bool. Returns (batch, n + 1, dim) normalised
        states; state t (t = 0 is the profile slot) predicts item t + 1. States at padding
        positions are meaningless (causal attention keeps them out of the real ones)."""
        batch, n, dim = items.shape
        if n > self.max_len:
            raise ValueError(f"history of {n} items exceeds the tower's max_len {self.max_len}")
        x_items = self.item_in(items) * item_mask.unsqueeze(-1)  # (batch, n, dim)
        x_start = self.start.expand(batch, 1, dim)  # (batch, 1, dim)
        if profile is not None and profile_mask is not None:
            x_profile = self.profile_in(profile.float()).unsqueeze(1)  # (batch, 1, dim)
            x_start = torch.where(profile_mask.view(batch, 1, 1), x_profile, x_start)
        x = torch.cat([x_start, x_items], dim=1)  # (batch, n + 1, dim)
        x = self.dropout(x + self.position.weight[: n + 1])
        for block in self.blocks:
            x = block(x)
        base = torch.cat([x_start, _causal_mean(items, item_mask)], dim=1)  # (batch, n + 1, dim)
        return F.normalize(self.out(self.norm(x)) + base, dim=-1)


def _causal_mean(items: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
    """(batch, n, dim) -> (batch, n, dim): position t gets the mean of items 1..t, the zero-shot
    user vector the tower learns a residual to."""
    weights = item_mask.unsqueeze(-1).to(items.dtype)  # (batch, n, 1)
    sums = torch.cumsum(items * weights, dim=1)  # (batch, n, dim)
    return sums / torch.cumsum(weights, dim=1).clamp(min=1.0)


class BertUserTower(nn.Module):
    """GPU option: BERT over the user document (profile + recent titles), pooled and projected.

    Shares the BERT of the item tower (siamese, as MultipleNegativesRankingLoss trains it)."""

    def __init__(self, bert: nn.Module, hidden: int, dim: int):
        super().__init__()
        self.bert = bert
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def pooled(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)  # (n, hidden)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(pooled.float()), dim=-1)  # (n, dim)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.pooled(input_ids, mask))


def build_towers(
    config: EncoderConfig, hidden: int, user_tower: str, bert: torch.nn.Module | None = None
) -> tuple[ItemAdapter, torch.nn.Module]:
    """Fresh (adapter, user tower) for a backbone of width `hidden`."""
    adapter = ItemAdapter(hidden, config.dim, config.dropout)
    if user_tower == "bert":
        if bert is None:
            raise ValueError("the BERT user tower needs the BERT module it shares with the items")
        return adapter, BertUserTower(bert, hidden, config.dim)
    seq = SequenceUserTower(
        config.dim, hidden, config.history_len, config.seq_layers, config.seq_heads, config.dropout
    )
    return adapter, seq


def last_states(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, n + 1, dim) tower states -> (batch, dim): the state after each row's last item
    (the profile slot for an empty history)."""
    rows = torch.arange(states.shape[0], device=states.device)
    return states[rows, lengths]


def pad_histories(
    histories: Sequence[np.ndarray], history_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Last history_len items of each history, right-padded. Returns item_idx (b, n) int64 with
    0 in padding, mask (b, n) bool, lengths (b,) int64, n = longest kept history (>= 1)."""
    kept = [np.asarray(h, dtype=np.int64)[-history_len:] for h in histories]
    longest = max([len(h) for h in kept] + [1])
    idx = np.zeros((len(kept), longest), dtype=np.int64)  # (b, n)
    mask = np.zeros((len(kept), longest), dtype=bool)
    for row, h in enumerate(kept):
        idx[row, : len(h)] = h
        mask[row, : len(h)] = True
    lengths = mask.sum(axis=1).astype(np.int64)
    return torch.from_numpy(idx), torch.from_numpy(mask), torch.from_numpy(lengths)
