"""Benchmark peer: SASRec (Kang & McAuley 2018) trained with full-softmax cross-entropy over every
item at every position (Klenitskiy & Vasilev, RecSys 2023). Reads per-user item_idx sequences
(oldest first); returns top-k item_idx. Not part of the product: a peer for published_quality.py.

Sequences are left-padded to max_len with 0 (item_idx i is token i + 1), so the newest item sits at
position max_len - 1 whatever the length, as in the original implementation; the causal mask keeps
every position from reading later ones, and padded positions are zeroed after every block.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 200
    hidden: int = 128
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 20  # epochs without a better validation NDCG@10 before stopping: validation
    # NDCG on a few hundred users is noisy, and on sparse data it plateaus (a popularity phase)
    # before rising again (ml-latest-small-sparse8: patience 10 stopped two of three seeds there)
    seed: int = 0
    device: str = "auto"  # cuda when available, else cpu


class Block(nn.Module):
    """Self-attention on the layer-normed queries + point-wise feed-forward, as in the SASRec
    reference code (queries normed, keys and values not; residual onto the normed queries)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.query = nn.Linear(hidden, hidden)
        self.key_value = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.Dropout(dropout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x: (B, L, H); allowed: (B, 1, L, L) True = may attend; keep: (B, L, 1) real positions
        batch, length, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H / heads)
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        query = self.attn_norm(x)
        key, value = self.key_value(x).chunk(2, dim=-1)
        attended = nn.functional.scaled_dot_product_attention(
            heads(self.query(query)), heads(key), heads(value), attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )  # fmt: skip
        x = query + self.out(attended.transpose(1, 2).reshape(batch, length, hidden))
        x = self.ffn_norm(x)
        return (x + self.ffn(x)) * keep


class SASRec(nn.Module):
    def __init__(self, n_items: int, config: SASRecConfig):
        super().__init__()
        self.config = config
        self.items = nn.Embedding(n_items + 1, config.hidden, padding_idx=0)  # row 0: padding
        self.positions = nn.Embedding(config.max_len, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.hidden, config.heads, config.dropout) for _ in range(config.blocks)
        )
        self.norm = nn.LayerNorm(config.hidden, eps=1e-8)
        for name, param in self.named_parameters():
            if param.dim() > 1 and "norm" not in name:
                nn.init.xavier_normal_(param)  # the reference code's initialisation
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, W) left-padded with 0, W <= max_len -> hidden states (B, W, H). The last
        column is position max_len - 1 whatever W: a batch trimmed of all-padding columns gives
        the same states as the full width (padding keys are masked)."""
        width = tokens.shape[1]
        positions = self.positions.weight[self.config.max_len - width :]  # (W, H)
        x = self.items(tokens) * self.config.hidden**0.5 + positions
        real = tokens > 0  # (B, W)
        keep = real.unsqueeze(-1).to(x.dtype)  # (B, W, 1)
        x = self.dropout(x) * keep
        eye = torch.eye(width, dtype=torch.bool, device=x.device)
        causal = torch.ones(width, width, dtype=torch.bool, device=x.device).tril()
        # (B, 1, W, W): earlier-or-same real items; the diagonal keeps padded rows finite
        allowed = (causal & real[:, None, None, :]) | eye
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, H) -> (N, n_items) scores of every item (padding row dropped)."""
        return hidden @ self.items.weight[1:].T


def pad_left(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """(n, length) int64 tokens: the newest `length` items of each sequence, + 1, left-padded 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq[-length:], dtype=np.int64) + 1
        if tail.size:
            out[row, length - tail.size :] = tail
    return out


def trimmed(tokens: np.ndarray) -> np.ndarray:
    """Drop the columns that are padding in every row (left-padded tokens)."""
    filled = np.flatnonzero(tokens.any(axis=0))
    return tokens[:, filled[0] :] if filled.size else tokens[:, -1:]


def train_epoch(model: SASRec, optimizer, sequences: list[np.ndarray], rng, device) -> float:
    """One pass over the users in a random order; the mean cross-entropy over every item at
    every target position. (Batches sorted by length would pad less, but learned more slowly
    per epoch on ml-100k: valid NDCG@10 .048 vs .069 at epoch 10, seed 0.)"""
    model.train()
    length = model.config.max_len
    inputs = pad_left([s[:-1] for s in sequences], length)  # (U, L)
    targets = pad_left([s[1:] for s in sequences], length)  # (U, L), 0 = no target
    total, count = 0.0, 0
    order = rng.permutation(len(sequences))
    for start in range(0, order.size, model.config.batch_size):
        rows = order[start : start + model.config.batch_size]
        width = trimmed(inputs[rows]).shape[1]  # exact: padding keys are masked
        tokens = torch.from_numpy(inputs[rows, -width:]).to(device)  # (B, W)
        target = torch.from_numpy(targets[rows, -width:]).to(device)  # (B, W)
        mask = target > 0
        hidden = model(tokens)[mask]  # (N, H): logits only where there is a next item
        loss = nn.functional.cross_entropy(model.logits(hidden), target[mask] - 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * int(mask.sum())
        count += int(mask.sum())
    return total / max(count, 1)


@torch.no_grad()
def recommend(
    model: SASRec,
    histories: Sequence[np.ndarray],
    exclude: Sequence[np.ndarray],
    k: int,
    batch: int = 256,
) -> np.ndarray:
    """(n, k) item_idx: the next item after each history, `exclude[i]` never returned."""
    model.eval()
    device = next(model.parameters()).device
    tokens = pad_left(histories, model.config.max_len)
    out = np.empty((len(histories), k), dtype=np.int64)
    for start in range(0, len(histories), batch):
        rows = slice(start, start + batch)
        hidden = model(torch.from_numpy(trimmed(tokens[rows])).to(device))[:, -1]  # (b, H)
        scores = model.logits(hidden).float()  # (b, n_items) for the item after the newest
        for i, items in enumerate(exclude[rows]):
            items = torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
            scores[i, items] = -torch.inf
        out[rows] = scores.topk(k, dim=1).indices.cpu().numpy()
    return out


@dataclass
class Fitted:
    model: SASRec
    best_epoch: int
    best_valid: float
    epochs: int
    seconds: float


def fit(
    train: Sequence[np.ndarray],
    n_items: int,
    config: SASRecConfig,
    validate: Callable[[SASRec], float],
    say: Callable[[str], None] = print,
) -> Fitted:
    """Train on `train` (per-user item_idx, oldest first), early-stopped on validate(model), a
    validation NDCG@10 (higher is better); the best epoch's weights are returned."""
    device = torch.device(
        config.device if config.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SASRec(n_items, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    sequences = [np.asarray(s) for s in train if len(s) >= 2]  # a target needs a previous item
    best, best_epoch, best_state, start = -1.0, 0, None, time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        loss = train_epoch(model, optimizer, sequences, rng, device)
        score = validate(model)
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        if epoch == 1 or epoch % 10 == 0 or epoch - best_epoch >= config.patience:
            seconds = time.perf_counter() - start
            say(f"      epoch {epoch}: loss {loss:.3f}, valid NDCG@10 {score:.4f}, {seconds:.0f} s")
        if epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return Fitted(model, best_epoch, best, epoch, time.perf_counter() - start)
