"""Training stage: the BERT-training trainer — (history -> next item) pairs, in-batch softmax.

Reads a trainable text source for items (the whole BERT on the GPU "full" path, or its top k
layers over cached states on the CPU path) and the training sequences; trains BERT, the item
adapter and the user tower with an in-batch sampled softmax, logQ-corrected, optional hard
negatives. History items enter the sequence user tower through a per-epoch snapshot of the
item features (adapter trained, BERT not), so a step runs BERT only over the batch's targets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.config import EncoderConfig
from recsys.encoder.model import TwoTowerEncoder, build_towers
from recsys.encoder.towers import BertUserTower, IdVectors, last_states, pad_histories
from recsys.text.documents import UserDocuments
from recsys.training.examples import pair_examples
from recsys.training.losses import sampled_softmax_loss
from recsys.training.optim import adamw
from recsys.training.text_sources import StateSource, TokenSource, pooled_all

HardNegatives = Callable[[np.ndarray], np.ndarray]  # user_idx (b,) -> item_idx (b, h) or (m,)


class PairTrainer:
    """Trains BERT (all of it, or the top layers) with the towers on (user, next item) pairs."""

    def __init__(
        self,
        config: EncoderConfig,
        bert: nn.Module,
        tokenizer: Any,
        items: TokenSource | StateSource,
        profiles: TokenSource | StateSource | None,
        sequences: Sequence[np.ndarray],
        has_profile: np.ndarray,
        user_tower: str,
        device: str,
        log_q: np.ndarray | None = None,
        hard_negatives: HardNegatives | None = None,
        documents: UserDocuments | None = None,
        profile_texts: Sequence[str | None] | None = None,
        id_rows: np.ndarray | None = None,
        id_vocab: Sequence[str] | None = None,
    ):
        """id_rows (n_items,): each item's row in the id-vector table (IdVectors), -1 for none;
        id_vocab: the item id of each table row. None: text-only towers (as FrozenTrainer)."""
        self.config, self.device, self.tokenizer = config, device, tokenizer
        self.items, self.profiles, self.sequences = items, profiles, sequences
        self.has_profile = has_profile
        self.hard_negatives = hard_negatives
        self.documents, self.profile_texts = documents, profile_texts  # BERT user tower only
        self.log_q = None if log_q is None else torch.as_tensor(log_q, device=device)
        hidden = int(bert.config.hidden_size)
        adapter, user = build_towers(config, hidden, user_tower, bert)
        modules: dict[str, nn.Module] = {"bert": bert, "adapter": adapter, "user": user}
        ids, rows, self.id_vocab = IdVectors.for_training(id_rows, id_vocab, len(items), config.dim)
        self.id_rows = None if rows is None else torch.as_tensor(rows, device=device)
        if ids is not None:
            modules["ids"] = ids
        self.modules = nn.ModuleDict(modules).to(device)
        bert_params = [p for p in bert.parameters() if p.requires_grad]
        bert_ids = {id(p) for p in bert.parameters()}
        head_params = [p for p in self.modules.parameters() if id(p) not in bert_ids]
        self.optimizer = adamw(
            [{"params": bert_params, "lr": config.bert_lr}, {"params": head_params}],
            config.lr,
            device,
        )
        self.users, self.positions = pair_examples(sequences, has_profile)
        if len(self.users) == 0:
            raise ValueError("no training pairs: every user has fewer than 2 train items")
        self._item_cache: torch.Tensor | None = None  # (n_items, hidden) snapshot, no grad
        self._profile_cache: torch.Tensor | None = None
        self._fresh = False  # True while the snapshots match the current weights

    @property
    def is_bert_user(self) -> bool:
        return isinstance(self.modules["user"], BertUserTower)

    def _autocast(self):
        if self.device.startswith("cuda") and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def refresh(self) -> None:
        """Snapshot pooled features of all items (and profiles) under the current BERT."""
        if self._fresh:
            return
        was_training = self.modules.training
        self.modules.eval()
        size = self.config.embed_batch(self.device)
        with self._autocast():
            self._item_cache = pooled_all(self.items, size)
            if self.profiles is not None and not self.is_bert_user:
                self._profile_cache = pooled_all(self.profiles, size)
        self.modules.train(was_training)
        self._fresh = True

    def histories(self, users: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
        """The history window training reads before each (user, position): <= history_len items."""
        length = self.config.history_len
        return [
            self.sequences[u][max(0, p - length) : p] for u, p in zip(users, positions, strict=True)
        ]

    def _item_vectors(self, pooled: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(..., hidden) pooled features of the catalog items `items` (...) -> (..., dim) their
        item vectors: the adapter's text vector, plus the item's id vector if it has one."""
        vectors = self.modules["adapter"](pooled)
        if self.id_rows is None:
            return vectors
        rows = self.id_rows[items.reshape(-1)]
        return self.modules["ids"](vectors.reshape(-1, vectors.shape[-1]), rows).view_as(vectors)

    def _user_vectors(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """(b, dim) user vectors; grads reach BERT only through the BERT user tower."""
        if self.is_bert_user:
            batch = self.tokenizer(
                self.user_documents(users, histories),
                truncation=True,
                padding=True,
                max_length=self.config.user_max_length,
                return_tensors="pt",
                return_token_type_ids=False,
            )
            ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
            return self.modules["user"](ids, mask)
        idx, mask, lengths = (t.to(self.device) for t in pad_histories(histories, 10**9))
        inputs = self._item_vectors(self._item_cache[idx], idx)  # (b, n, dim)
        profile = profile_mask = None
        if self._profile_cache is not None:
            profile = self._profile_cache[torch.from_numpy(users).to(self.device)]
            profile_mask = torch.from_numpy(self.has_profile[users]).to(self.device)
        states = self.modules["user"](inputs, mask, profile, profile_mask)  # (b, n + 1, dim)
        return last_states(states, lengths)

    def user_documents(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> list[str]:
        """The documents the BERT user tower reads for (user, history) pairs (recsys.text)."""
        if self.documents is None or self.profile_texts is None:
            raise ValueError("the BERT user tower needs UserDocuments and the profile texts")
        pairs = zip(users.tolist(), histories, strict=True)
        return [self.documents(self.profile_texts[u], h) for u, h in pairs]

    def _negatives(self, users: np.ndarray) -> np.ndarray:
        if self.hard_negatives is None or self.config.hard_negatives == 0:
            return np.zeros(0, dtype=np.int64)
        mined = np.asarray(self.hard_negatives(users), dtype=np.int64)
        mined = mined[:, : self.config.hard_negatives] if mined.ndim == 2 else mined
        mined = mined.reshape(-1)
        return np.unique(mined[(mined >= 0) & (mined < len(self.items))])

    def _seen(self, histories: list[np.ndarray]) -> torch.Tensor:
        """(b, h) the history items of each row, -1 padded: not negatives for that row."""
        idx, mask, _ = pad_histories(histories, self.config.history_len)
        return torch.where(mask, idx, torch.full_like(idx, -1)).to(self.device)

    def step(self, users: np.ndarray, positions: np.ndarray) -> float:
        """One optimizer step on (user, position) pairs (b,); returns the loss. BERT runs once
        per distinct target item and mined negative; a repeated target is masked, not doubled."""
        targets = np.array(
            [self.sequences[u][p] for u, p in zip(users, positions, strict=True)], np.int64
        )
        unique, inverse = np.unique(targets, return_inverse=True)
        negatives = self._negatives(users)
        with self._autocast():
            wanted = np.concatenate([unique, negatives])
            pooled = self.items.pooled(wanted)  # (u + m, hidden)
            vectors = self._item_vectors(pooled.float(), torch.from_numpy(wanted).to(self.device))
            histories = self.histories(users, positions)
            user_vectors = self._user_vectors(users, histories).float()
        target_t = torch.from_numpy(targets).to(self.device)
        log_q = None
        if self.log_q is not None and self.config.logq_correction:
            log_q = self.log_q[target_t]
        loss = sampled_softmax_loss(
            user_vectors,
            vectors[torch.from_numpy(inverse).to(self.device)],
            target_t,
            self.config.temperature,
            log_q,
            vectors[len(unique) :],
            torch.from_numpy(negatives).to(self.device),
            self._seen(histories),
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.modules.parameters(), 1.0)
        self.optimizer.step()
        self._fresh = False
        return float(loss.detach())

    def run_epoch(
        self, rng: np.random.Generator, deadline: float | None = None
    ) -> tuple[float, int]:
        """One pass over all (user, position) pairs; (mean loss, pairs trained)."""
        if not self.is_bert_user:  # the sequence tower reads history items from the snapshot
            self.refresh()
        self.modules.train()
        order = rng.permutation(len(self.users))
        total, count, steps = 0.0, 0, 0
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            total += self.step(self.users[rows], self.positions[rows])
            count, steps = count + len(rows), steps + 1
            if deadline is not None and time.monotonic() > deadline:
                break
        return total / max(steps, 1), count

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        self.refresh()
        every = torch.arange(len(self._item_cache), device=self._item_cache.device)
        return self._item_vectors(self._item_cache, every).cpu().numpy()  # (n_items, dim)

    @torch.no_grad()
    def user_vectors(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) states after each history, under the current weights: the sequence tower
        reads its history items from the snapshot, so a stale one is refreshed first (else
        validation after an epoch scored users of the epoch's start beside its end's items)."""
        if not self.is_bert_user:
            self.refresh()
        self.modules.eval()
        histories = [np.asarray(h)[-self.config.history_len :] for h in histories]
        out = []
        size = self.config.embed_batch(self.device)
        for s in range(0, len(users), size):
            chunk = users[s : s + size]
            with self._autocast():
                out.append(self._user_vectors(chunk, histories[s : s + len(chunk)]).float())
        vectors = torch.cat(out).cpu().numpy() if out else np.zeros((0, self.config.dim))
        empty = np.array([len(h) == 0 for h in histories]) & ~self.has_profile[users]
        vectors[empty] = 0.0
        return vectors.astype(np.float32)

    def encoder(self, backbone_name: str, backbone_hash: str, **extra) -> TwoTowerEncoder:
        """Towers + the trained BERT (saved beside them by TwoTowerEncoder.save)."""
        towers = (self.modules["adapter"], self.modules["user"])
        backbone = (backbone_name, backbone_hash, "full")
        bert = {"bert": self.modules["bert"], "tokenizer": self.tokenizer, "device": self.device}
        if self.id_vocab:
            extra.update(ids=self.modules["ids"], id_vocab=self.id_vocab)
        return TwoTowerEncoder(self.config, *towers, *backbone, **bert, **extra)
