"""Training stage: atomic training checkpoints — weights, optimizer and RNG state, no pickle.

Writes one safetensors file per checkpoint (tensors + a JSON document in its metadata) through a
temp file, fsync and os.replace, so a crash leaves the previous checkpoint whole; reads it back.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import save as save_bytes

from recsys.atomic import atomic_write_bytes

_META_KEY = "recsys"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read back: the message names the file and what is wrong."""


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Atomically write tensors + a JSON-able meta dict as safetensors; returns its sha256."""
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = save_bytes(plain, metadata={_META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by save_tensors: (tensors on cpu, meta)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get(_META_KEY, "{}"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, json.JSONDecodeError, safetensors.SafetensorError) as exc:
        raise CheckpointError(f"{path}: not a readable recsys checkpoint: {exc}") from exc
    return tensors, meta


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Flatten an optimizer state_dict into named tensors + JSON-able param groups."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"optimizer/{pid}/{key}"] = value
    return tensors, state["param_groups"]


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list
) -> None:
    """Inverse of optimizer_tensors; tensors move to the device of the parameters."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state(generator: np.random.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch (cpu + cuda), numpy generator and python `random` states: tensors + JSON."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for n, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{n}"] = cuda_state
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": generator.bit_generator.state,
        "python": [version, list(internal), gauss],
    }
    return tensors, meta


def restore_rng(
    generator: np.random.Generator, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    generator.bit_generator.state = meta["numpy"]
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
