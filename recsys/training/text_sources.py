"""Training stage: trainable text sources — pooled BERT features of rows of a fixed text list.

Reads pre-tokenized ids (full path: the whole BERT trains) or cached hidden states entering the
top k layers (CPU path with trainable_layers = k: top_layer_inputs, cached in
<cache_dir>/<model hash>-L<max_length>-top<k>-<set hash>.npz); writes (rows, hidden) pooled
tensors with grad.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.atomic import atomic_write_bytes
from recsys.encoder import backbone as bb
from recsys.encoder.backbone import mean_pool, pad_token_ids, tokenize_lengths
from recsys.encoder.features import Featurizer
from recsys.text.documents import text_hash


class TokenSource:
    """Texts tokenized once; pooled(rows) runs the (trainable) BERT over those rows."""

    def __init__(self, tokenizer: Any, bert: nn.Module, texts: Sequence[str], max_length: int):
        self.bert = bert
        self.ids = tokenize_lengths(tokenizer, list(texts), max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.ids)

    def pooled(self, rows: np.ndarray) -> torch.Tensor:
        device = next(self.bert.parameters()).device
        input_ids, mask = pad_token_ids([self.ids[r] for r in rows], self.pad_id)
        input_ids, mask = input_ids.to(device), mask.to(device)  # (b, longest)
        hidden = self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)  # (b, hidden) float32


class _PassThroughEmbeddings(nn.Module):
    """Stands in for BertEmbeddings: the cached states already are the layer input."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs) -> torch.Tensor:
        return inputs_embeds


def bert_layers(bert: nn.Module) -> list[nn.Module]:
    """The transformer layers of a BERT-style model (encoder.layer), else a clear error."""
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(bert, "embeddings"):
        raise ValueError(
            "trainable_layers / freeze_bottom_layers need a BERT-style model (embeddings + "
            f"encoder.layer); found {type(bert).__name__}"
        )
    return list(layers)


def top_layers_model(bert: nn.Module, top_layers: int) -> nn.Module:
    """A BertModel whose encoder is the top `top_layers` layers of `bert` (the same modules, so
    training it trains `bert`) and whose embeddings pass cached hidden states through."""
    layers = bert_layers(bert)
    config = bert.config.__class__.from_dict(bert.config.to_dict())
    config.num_hidden_layers = top_layers
    top = bert.__class__(config, add_pooling_layer=False)
    top.encoder.layer = nn.ModuleList(layers[-top_layers:])
    top.embeddings = _PassThroughEmbeddings()
    return top.to(next(bert.parameters()).device)


class StateSource:
    """Hidden states entering the top k layers, cached per text; pooled(rows) runs those layers."""

    def __init__(self, top: nn.Module, states: np.ndarray, lengths: np.ndarray):
        self.top = top
        self.states = states  # (n, max_length, hidden) float16
        self.lengths = lengths  # (n,)

    def __len__(self) -> int:
        return len(self.lengths)

    def pooled(self, rows: np.ndarray) -> torch.Tensor:
        device = next(self.top.parameters()).device
        longest = int(self.lengths[rows].max())
        states = torch.from_numpy(self.states[rows, :longest].astype(np.float32)).to(device)
        mask = (torch.arange(longest)[None, :] < torch.from_numpy(self.lengths[rows])[:, None]).to(
            device=device, dtype=torch.long
        )  # (b, longest)
        hidden = self.top(inputs_embeds=states, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)  # (b, hidden)


def pooled_all(source: TokenSource | StateSource, batch_size: int) -> torch.Tensor:
    """(n, hidden) pooled features of every row, no grad (eval-mode snapshot)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(source), batch_size):
            rows = np.arange(start, min(start + batch_size, len(source)))
            out.append(source.pooled(rows).float())
    return torch.cat(out)


def _set_hash(hashes: np.ndarray) -> str:
    return hashlib.sha256("".join(hashes.tolist()).encode()).hexdigest()[:16]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@torch.inference_mode()
def top_layer_inputs(
    base: Featurizer, texts: Sequence[str], top_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states entering the top `top_layers` layers of the base model (its torch loader,
    max_length, batch size, device and cache directory), for training those layers over a
    frozen bottom. Returns states (n, max_length, hidden) float16 zero-padded and lengths (n,)."""
    max_length, batch_size, device = base.max_length, base.batch_size, base.device
    hashes = np.array([text_hash(t) for t in texts], dtype="U16")  # no pickle in the npz
    path = None
    if base.cache_dir is not None:
        key = f"{base.cache_key()}-top{top_layers}-{_set_hash(hashes)}"
        path = base.cache_dir / f"{key}.npz"
        if path.is_file():
            cached = _load_npz(path)
            return cached["states"], cached["lengths"]
    tokenizer, model = base.loader()
    n_layers = int(model.config.num_hidden_layers)
    if not 0 < top_layers <= n_layers:
        raise ValueError(f"trainable_layers must be in 1..{n_layers}, found {top_layers}")
    ids = bb.tokenize_lengths(tokenizer, list(texts), max_length)
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    states = np.zeros((len(ids), max_length, model.config.hidden_size), np.float16)
    pad_id = tokenizer.pad_token_id or 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        input_ids, mask = pad_token_ids(chunk, pad_id)
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            output_hidden_states=True,
        )
        entering = out.hidden_states[n_layers - top_layers]  # (batch, longest, hidden)
        states[start : start + len(chunk), : entering.shape[1]] = entering.float().cpu().numpy()
    if path is not None:
        _save_npz(path, states=states, lengths=lengths)
    return states, lengths
