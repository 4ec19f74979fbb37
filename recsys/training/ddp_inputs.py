"""Training stage, data-parallel: the prepared inputs every rank of encoder training reads.

The driver (the nightly's encoder step, or rank 0 under torchrun) writes <dir>/inputs.npz —
pooled base-model features of items and profiles, every (history, next item) pair of the
training sequences, logQ, the sequences and the validation users — and <dir>/inputs.json (the
encoder config and backbone); ranks read them back, with no BERT and no data loading of their own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import EncoderConfig, TextConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.encoder.towers import pad_histories
from recsys.errors import UserError
from recsys.schema import ITEM_IDX
from recsys.training.examples import item_log_q, pair_examples
from recsys.training.setup import Plan, frozen_features, prepare_data
from recsys.training.validation import HeldOut

INPUTS, META = "inputs.npz", "inputs.json"
PLAN = Plan("frozen", "sequence", "sampled")  # what data-parallel training trains


class DistributedTrainingError(UserError, ValueError):
    """An encoder config the data-parallel loop cannot train; the message says what to change."""


def check_config(config: EncoderConfig) -> None:
    """The data-parallel loop trains the item adapter and the sequence user tower over frozen
    base-model features with in-batch negatives gathered across ranks; anything else is refused."""
    wrong = {
        "path": (config.path, ("auto", "frozen")),
        "trainable_layers": (config.trainable_layers, (0,)),
        "user_tower": (config.user_tower, ("auto", "sequence")),
        "softmax": (config.softmax, ("auto", "sampled")),
    }
    bad = {k: v for k, (v, allowed) in wrong.items() if v not in allowed}
    if bad:
        raise DistributedTrainingError(
            "[compute] train_workers > 1 trains the towers over frozen features with in-batch "
            "negatives (encoder.path = 'frozen' or 'auto', trainable_layers = 0, user_tower = "
            f"'sequence' or 'auto', softmax = 'sampled' or 'auto'); found {bad}: change those or "
            "set [compute] train_workers = 1 to train in the driver"
        )


def prepare_inputs(
    dataset: Dataset,
    split: Split,
    config: EncoderConfig,
    text_config: TextConfig,
    cache_dir: Path,
    directory: Path,
    progress: bool = False,
) -> dict[str, Any]:
    """Write inputs.npz and inputs.json into `directory`; returns the meta written."""
    check_config(config)
    device = _driver_device(config)
    data = prepare_data(dataset, split, config, text_config, PLAN, cache_dir, device, progress)
    items, profiles = frozen_features(data, config, device)
    users, positions = pair_examples(data.sequences, data.has_profile)  # (P,), (P,)
    if len(users) == 0:
        raise ValueError("no training pairs: every user has fewer than 2 train items")
    histories = [data.sequences[u][:p] for u, p in zip(users, positions, strict=True)]
    history, mask, lengths = (t.numpy() for t in pad_histories(histories, config.history_len))
    targets = np.array([data.sequences[u][p] for u, p in zip(users, positions, strict=True)])
    arrays = {
        "features": items.astype(np.float32),  # (n_items, hidden)
        "history": history,  # (P, n) item_idx, 0 in padding
        "mask": mask,  # (P, n) bool
        "lengths": lengths,  # (P,)
        "targets": targets.astype(np.int64),  # (P,)
        "users": users,  # (P,) user_idx of each pair
        "log_q": item_log_q(split.train[ITEM_IDX].to_numpy(), dataset.n_items, config.batch_size),
        "has_profile": data.has_profile,  # (n_users,)
        **_ragged("sequence", data.sequences),
        "valid_users": data.valid.users,
        **_ragged("valid_relevant", data.valid.relevant),
    }
    if profiles is not None:
        arrays["profiles"] = profiles.astype(np.float32)  # (n_users, hidden)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / INPUTS, **arrays)
    meta = {
        "encoder": config.model_dump(mode="json"),
        "backbone_name": data.backbone_name,
        "backbone_hash": data.backbone_hash,
        "user_doc": [data.documents.n_titles, data.documents.max_chars],
        "pairs": len(targets),
    }
    (directory / META).write_text(json.dumps(meta), encoding="utf-8")
    return meta


def _driver_device(config: EncoderConfig) -> str:
    """Where the driver runs the base model over uncached texts: its own GPU when it has one
    (and encoder.device allows it), else the CPU — the ranks' GPUs may be on other nodes."""
    import torch

    return "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"


def _ragged(name: str, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """A list of 1-d int arrays as <name>_flat (total,) and <name>_offsets (len + 1,)."""
    sizes = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.concatenate([np.asarray(r, np.int64) for r in rows] or [np.zeros(0, np.int64)])
    return {f"{name}_flat": flat, f"{name}_offsets": offsets}


def unragged(arrays: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    flat, offsets = arrays[f"{name}_flat"], arrays[f"{name}_offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def read_meta(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / META).read_text(encoding="utf-8"))


def read_arrays(directory: Path) -> dict[str, np.ndarray]:
    with np.load(Path(directory) / INPUTS, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def validation_data(arrays: dict[str, np.ndarray]) -> tuple[list[np.ndarray], HeldOut]:
    """(the training sequences per user_idx, the validation users with their histories)."""
    sequences = unragged(arrays, "sequence")
    users = arrays["valid_users"]
    histories = [sequences[u] for u in users]
    return sequences, HeldOut(users, histories, unragged(arrays, "valid_relevant"))
