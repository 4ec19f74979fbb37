"""Encoder stage: the base model's pooled text features — which model, how long, how batched,
where, by which runtime, cached where and loaded how, gathered in one `Featurizer`.

Reads texts and a backbone; writes the features into the project's one text->vector cache
(recsys.encoder.embed.EmbeddingCache) under <cache_dir>/<model hash>-L<max_length>/, and the
ONNX export beside it (<cache_dir>/<model hash>-opset<N>.onnx). Reruns are free; a changed
catalog embeds only the texts the cache has not seen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.config import EncoderConfig
from recsys.encoder import backbone as bb
from recsys.encoder.embed import EmbeddingCache, embed_texts
from recsys.encoder.onnx import OnnxBackbone, resolve_runtime

Loader = Callable[[], tuple[Any, torch.nn.Module]]  # () -> (tokenizer, torch model)


class Featurizer:
    """(n, hidden) float32 mean-pooled features of texts under one backbone, NOT normalised.

    `loader` returns (tokenizer, torch model) and runs only when some text must be embedded
    (default: load_backbone(model_name, device)); `runtime` ("torch", "onnxruntime", "auto") is
    resolved for `device` once, when the backbone loads. With `cache_dir`, features are cached
    by text under the model's weights hash and max_length. Copies made by with_max_length share
    the loaded backbone. `embed_fn` (texts -> (n, hidden)) replaces embed() for the texts the
    cache lacks: the Ray backend's actor pool."""

    def __init__(
        self,
        model_name: str,
        max_length: int,
        batch_size: int,
        device: str = "cpu",
        *,
        runtime: str = "torch",
        cache_dir: Path | None = None,
        loader: Loader | None = None,
        progress: bool = False,
        embed_fn: Callable[[list[str]], np.ndarray] | None = None,
    ):
        self.model_name, self.max_length, self.batch_size = model_name, max_length, batch_size
        self.device, self.runtime, self.progress = str(device), runtime, progress
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.loader = loader or (lambda: bb.load_backbone(model_name, self.device))
        self._shared: dict[str, Any] = {}  # the loaded backbone and the weights hash
        # What computes uncached features: embed() here, or a fan-out (recsys.encoder.distributed)
        self.embed_fn = embed_fn

    @classmethod
    def for_encoder(
        cls, config: EncoderConfig, device: str, max_length: int | None = None, **options: Any
    ) -> Featurizer:
        """The base model of an EncoderConfig with its batch size for `device`."""
        length = config.max_length if max_length is None else max_length
        name = config.model_name_or_path
        return cls(name, length, config.embed_batch(device), device, **options)

    def with_max_length(self, max_length: int) -> Featurizer:
        twin = copy.copy(self)  # shallow: the same _shared dict, so one load serves both
        twin.max_length = max_length
        return twin

    def load(self) -> tuple[Any, bb.Backbone]:
        """(tokenizer, backbone) under the resolved runtime; loaded once."""
        if "backbone" not in self._shared:
            tokenizer, model = self.loader()
            if resolve_runtime(self.runtime, self.device) == "onnxruntime":
                backbone: bb.Backbone = OnnxBackbone(model, self.cache_dir)
            else:
                backbone = bb.TorchBackbone(model, self.device)
            self._shared["backbone"] = (tokenizer, backbone)
        return self._shared["backbone"]

    def cache_key(self) -> str:
        """What the cached features depend on: the weights and the token limit."""
        if "hash" not in self._shared:
            self._shared["hash"] = bb.model_hash(self.model_name)
        return f"{self._shared['hash']}-L{self.max_length}"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            hidden = int(self.load()[1].config.hidden_size)
            return np.zeros((0, hidden), dtype=np.float32)
        compute = self.embed_fn or self.embed
        if self.cache_dir is None:
            return compute(texts)
        cache = EmbeddingCache(self.cache_dir)
        features, _ = embed_texts(texts, compute, self.cache_key(), cache)
        return features

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, hidden) features computed now, no cache."""
        tokenizer, backbone = self.load()
        return bb.pooled_embeddings(
            tokenizer, backbone, texts, self.max_length, self.batch_size, progress=self.progress
        )
