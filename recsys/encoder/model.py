"""Encoder stage: TwoTowerEncoder — the trained towers plus their backbone, saved and loaded.

Reads/writes an encoder directory: encoder.json (config, backbone name + hash, encoder_hash),
towers.safetensors (adapter + user tower + id vectors), bert/ (fine-tuned BERT, full path only),
item_titles.json (BERT user tower only) and item_ids.json (the item id of each id-vector row, when
the encoder has id vectors). No pickle.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from recsys.atomic import atomic_write_bytes
from recsys.config import EncoderConfig
from recsys.encoder import backbone as bb
from recsys.encoder.features import Featurizer
from recsys.encoder.towers import (
    BertUserTower,
    IdVectors,
    ItemAdapter,
    build_towers,
    last_states,
    pad_histories,
)
from recsys.errors import UserError
from recsys.ids import IdMap
from recsys.text.documents import UserDocuments

FORMAT_VERSION = 1
EmbedFn = Callable[[list[str]], np.ndarray]  # texts -> (n, hidden) pooled features
_BATCH = 512  # users / items per forward pass at inference


class EncoderLoadError(UserError, ValueError):
    """An encoder directory that cannot be loaded; the message names the file and the problem."""


class TwoTowerEncoder:
    """Item and user towers in one space; every output row is L2-normalised float32.

    `backbone` names the BERT that turns text into pooled features: the base model (frozen path)
    or the fine-tuned copy saved beside the towers (full path)."""

    def __init__(
        self,
        config: EncoderConfig,
        adapter: ItemAdapter,
        user_tower: torch.nn.Module,
        backbone_name: str,
        backbone_hash: str,
        training_path: str,
        bert: torch.nn.Module | None = None,
        tokenizer: Any = None,
        item_titles: Sequence[str] | None = None,
        user_doc: tuple[int, int] = (10, 512),
        device: str = "cpu",
        ids: IdVectors | None = None,
        id_vocab: Sequence[str] | None = None,
    ):
        self.config = config
        self.device = device
        self.adapter = adapter.to(device).eval()
        self.user_tower = user_tower.to(device).eval()
        self.backbone_name = backbone_name
        self.backbone_hash = backbone_hash
        self.training_path = training_path
        self.item_titles = list(item_titles) if item_titles is not None else None
        self.user_doc = user_doc  # (titles in a user document, max chars)
        self._bert = bert.to(device).eval() if bert is not None else None
        self._tokenizer = tokenizer
        rows = 0 if ids is None else ids.table.shape[0]
        if len(id_vocab or ()) != rows:
            raise ValueError(f"id_vocab: expected one item id per id-vector row ({rows})")
        self.ids = ids.to(device).eval() if ids is not None else None
        self._id_map = IdMap(id_vocab) if ids is not None else None  # item id -> table row
        self.encoder_hash = ""

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def id_vocab(self) -> list[str] | None:
        """The item id of each id-vector row; None without id vectors."""
        return None if self._id_map is None else self._id_map.ids

    @property
    def user_tower_kind(self) -> str:
        return "bert" if isinstance(self.user_tower, BertUserTower) else "sequence"

    def backbone(self) -> tuple[Any, torch.nn.Module]:
        """(tokenizer, BERT), loaded on first use and checked against the recorded hash."""
        if self._bert is None or self._tokenizer is None:
            if bb.model_hash(self.backbone_name) != self.backbone_hash:
                raise EncoderLoadError(
                    f"backbone {self.backbone_name!r} no longer matches the hash recorded at "
                    f"training ({self.backbone_hash}); retrain the encoder or restore the model"
                )
            self._tokenizer, self._bert = bb.load_backbone(self.backbone_name, self.device)
        return self._tokenizer, self._bert

    def featurizer(
        self, max_length: int, cache_dir: Path | None = None, embed_fn: EmbedFn | None = None
    ) -> Featurizer:
        """This encoder's backbone as a Featurizer. With a cache directory, the configured runtime
        (its ONNX export is cached there too); without one, torch. `embed_fn` computes the
        features the cache lacks instead of this process (the Ray backend)."""
        runtime = self.config.runtime if cache_dir is not None else "torch"
        size = self.config.embed_batch(self.device)
        options = {"runtime": runtime, "cache_dir": cache_dir, "loader": self.backbone}
        return Featurizer(
            self.backbone_name, max_length, size, self.device, **options, embed_fn=embed_fn
        )

    def item_featurizer(
        self, feature_cache: Path | None = None, embed_fn: EmbedFn | None = None
    ) -> Featurizer:
        """The Featurizer of item documents. feature_cache: the frozen-feature cache directory
        training filled (train_encoder's cache_dir); an encoder trained on the frozen path keeps
        the base BERT unchanged, so its pooled features of texts already seen there are read back
        instead of recomputed."""
        cached = feature_cache if self.training_path == "frozen" else None
        return self.featurizer(self.config.max_length, cached, embed_fn)

    def pooled(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """(n, hidden) mean-pooled backbone features of texts."""
        return self.featurizer(max_length)(texts)

    def encode_items(
        self,
        texts: list[str],
        feature_cache: Path | None = None,
        embed_fn: EmbedFn | None = None,
        item_ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        """(n, dim) L2-normalised float32 item vectors of item documents (feature_cache and
        embed_fn: item_featurizer). item_ids (n,): add each item's id vector (with_id_vectors);
        None: the text vectors alone."""
        pooled = self.item_featurizer(feature_cache, embed_fn)(texts)  # (n, hidden)
        vectors = self.item_vectors_from_features(pooled)
        return vectors if item_ids is None else self.with_id_vectors(vectors, item_ids)

    @torch.inference_mode()
    def item_vectors_from_features(self, pooled: np.ndarray) -> np.ndarray:
        """(n, hidden) pooled backbone features -> (n, dim) normalised item vectors."""
        pooled = np.asarray(pooled, dtype=np.float32)
        hidden = self.adapter.norm.normalized_shape[0]
        if pooled.ndim != 2 or pooled.shape[1] != hidden:
            raise ValueError(f"pooled features: expected shape (n, {hidden}), found {pooled.shape}")
        out = [
            self.adapter(torch.from_numpy(pooled[s : s + _BATCH]).to(self.device)).cpu().numpy()
            for s in range(0, len(pooled), _BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def with_id_vectors(self, vectors: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """(n, dim) text item vectors of the items item_ids -> (n, dim) their item vectors: the id
        vector added where the item had one at training (unchanged without id vectors, and for
        items the encoder never saw)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(item_ids) != len(vectors):
            raise ValueError(f"item_ids: expected {len(vectors)}, found {len(item_ids)}")
        if self.ids is None:
            return vectors
        rows = self._id_map.to_indices(str(i) for i in item_ids)  # (n,), -1: none
        out = [
            self.ids(
                torch.from_numpy(vectors[s : s + _BATCH]).to(self.device),
                torch.from_numpy(rows[s : s + _BATCH]).to(self.device),
            ).cpu().numpy()
            for s in range(0, len(vectors), _BATCH)
        ]  # fmt: skip
        return np.concatenate(out) if out else vectors

    @torch.inference_mode()
    def encode_users(
        self,
        histories: Sequence[np.ndarray],
        item_vectors: np.ndarray,
        profile_texts: Sequence[str | None] | None = None,
        item_titles: Sequence[str] | None = None,
    ) -> np.ndarray:
        """(n, dim) normalised user vectors from item_idx histories (oldest first) over the item
        vectors (n_items, dim), plus profile texts. A user with neither history nor profile gets
        a zero row: the caller falls back to popularity. `item_titles` (BERT user tower) default
        to the titles saved at training. `histories` may also be recsys.ranking.base.Query
        objects (their history and profile_text are used; profile_texts must then be None)."""
        if len(histories) and hasattr(histories[0], "history"):
            if profile_texts is not None:
                raise ValueError("profile_texts must be None when Query objects are passed")
            profile_texts = [q.profile_text for q in histories]
            histories = [q.history for q in histories]
        n = len(histories)
        profiles = list(profile_texts) if profile_texts is not None else [None] * n
        if len(profiles) != n:
            raise ValueError(f"profile_texts: expected {n} entries, found {len(profiles)}")
        hist = [_checked_history(h, len(item_vectors), row) for row, h in enumerate(histories)]
        empty = np.array(
            [len(h) == 0 and not _has_text(p) for h, p in zip(hist, profiles, strict=True)], bool
        )
        if self.user_tower_kind == "bert":
            out = self._bert_users(hist, profiles, item_titles)
        else:
            out = self._sequence_users(hist, item_vectors, profiles)
        out[empty] = 0.0
        return out

    def _sequence_users(self, hist, item_vectors: np.ndarray, profiles) -> np.ndarray:
        with warnings.catch_warnings():  # a bundle's memory-mapped, read-only vectors: only read
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            vectors = torch.as_tensor(np.asarray(item_vectors, np.float32), device=self.device)
        has_profile = np.array([_has_text(p) for p in profiles], dtype=bool)
        pooled = None
        if has_profile.any():
            texts = [p for p in profiles if _has_text(p)]
            pooled = np.zeros((len(profiles), self.adapter.norm.normalized_shape[0]), np.float32)
            pooled[has_profile] = self.pooled(texts, self.config.user_max_length)
        out = np.zeros((len(hist), self.dim), dtype=np.float32)
        for s in range(0, len(hist), _BATCH):
            idx, mask, lengths = pad_histories(hist[s : s + _BATCH], self.config.history_len)
            profile = profile_mask = None
            if pooled is not None:
                profile = torch.from_numpy(pooled[s : s + _BATCH]).to(self.device)
                profile_mask = torch.from_numpy(has_profile[s : s + _BATCH]).to(self.device)
            states = self.user_tower(
                vectors[idx.to(self.device)], mask.to(self.device), profile, profile_mask
            )  # (b, n + 1, dim)
            out[s : s + len(idx)] = last_states(states, lengths.to(self.device)).cpu().numpy()
        return out

    def user_documents(
        self,
        histories: Sequence[np.ndarray],
        profiles: Sequence[str | None],
        item_titles: Sequence[str] | None = None,
    ) -> list[str]:
        """The documents the BERT user tower reads for item_idx histories (oldest first) and
        profile texts: recsys.text's UserDocuments over the newest history_len items, exactly as
        training wrote them. `item_titles` default to the titles saved at training."""
        titles = item_titles if item_titles is not None else self.item_titles
        if titles is None:
            raise ValueError("the BERT user tower needs item_titles to write user documents")
        top = max((int(np.max(h)) for h in histories if len(h)), default=-1)
        if top >= len(titles):
            raise ValueError(
                f"history item_idx {top} has no title: the encoder knows {len(titles)} item "
                "titles (the catalog at training); pass item_titles= for the current catalog"
            )
        documents = UserDocuments(titles, *self.user_doc)
        window = self.config.history_len
        return [
            documents(p, np.asarray(h)[-window:]) for h, p in zip(histories, profiles, strict=True)
        ]

    def _bert_users(self, hist, profiles, item_titles) -> np.ndarray:
        docs = self.user_documents(hist, profiles, item_titles)
        pooled = self.pooled(docs, self.config.user_max_length)  # (n, hidden)
        head = self.user_tower
        out = [
            head.project(torch.from_numpy(pooled[s : s + _BATCH]).to(self.device)).cpu().numpy()
            for s in range(0, len(pooled), _BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def tower_state(self) -> dict[str, torch.Tensor]:
        """Weights of the towers (the BERT user tower's shared BERT excluded)."""
        state = {f"adapter.{k}": v for k, v in self.adapter.state_dict().items()}
        user = self.user_tower
        user_state = (
            user.head.state_dict() if isinstance(user, BertUserTower) else user.state_dict()
        )
        state.update({f"user.{k}": v for k, v in user_state.items()})
        if self.ids is not None:
            state.update({f"ids.{k}": v for k, v in self.ids.state_dict().items()})
        return state

    def save(self, directory: Path) -> None:
        """Write the encoder directory; encoder.json goes last, so its presence means complete."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        backbone_field = {"name": self.backbone_name, "hash": self.backbone_hash}
        if self.training_path != "frozen":
            tokenizer, bert = self.backbone()
            bert.save_pretrained(directory / "bert", safe_serialization=True)
            tokenizer.save_pretrained(directory / "bert")
            backbone_field = {"name": "bert", "hash": bb.model_hash(directory / "bert")}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tower_state().items()}
        blob = save_safetensors(tensors)
        atomic_write_bytes(directory / "towers.safetensors", blob)
        if self.item_titles is not None:
            atomic_write_bytes(
                directory / "item_titles.json", json.dumps(self.item_titles).encode()
            )
        vocab = b""
        if self.id_vocab is not None:
            vocab = json.dumps(self.id_vocab).encode()
            atomic_write_bytes(directory / "item_ids.json", vocab)
        digest = _digest(blob, backbone_field["hash"], vocab)
        self.encoder_hash = digest
        meta = {
            "format": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "hidden": int(self.adapter.norm.normalized_shape[0]),
            "training_path": self.training_path,
            "user_tower": self.user_tower_kind,
            "user_doc": list(self.user_doc),
            "backbone": backbone_field,
            "encoder_hash": digest,
        }
        atomic_write_bytes(directory / "encoder.json", json.dumps(meta, indent=2).encode())

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> TwoTowerEncoder:
        """Rebuild an encoder saved by save(); a frozen backbone loads on first use."""
        directory = Path(directory)
        meta = _read_meta(directory)
        config = EncoderConfig.model_validate(meta["config"])
        name = meta["backbone"]["name"]
        name = str(directory / "bert") if name == "bert" else name
        blob = (directory / "towers.safetensors").read_bytes()
        ids_file = directory / "item_ids.json"
        vocab = ids_file.read_bytes() if ids_file.is_file() else b""
        digest = _digest(blob, meta["backbone"]["hash"], vocab)
        if digest != meta["encoder_hash"]:
            raise EncoderLoadError(
                f"{directory}: towers.safetensors does not match encoder_hash "
                f"{meta['encoder_hash']} (found {digest}, item_ids.json included); the directory "
                "is corrupt"
            )
        tokenizer = bert = None
        if meta["user_tower"] == "bert":
            tokenizer, bert = bb.load_backbone(name, device)
        adapter, user_tower = build_towers(config, int(meta["hidden"]), meta["user_tower"], bert)
        tensors = load_safetensors(blob)
        adapter.load_state_dict(_strip(tensors, "adapter."))
        target = user_tower.head if isinstance(user_tower, BertUserTower) else user_tower
        target.load_state_dict(_strip(tensors, "user."))
        ids = id_vocab = None
        if vocab:
            id_vocab = json.loads(vocab)
            ids = IdVectors(len(id_vocab), config.dim)
            ids.load_state_dict(_strip(tensors, "ids."))
        titles_file = directory / "item_titles.json"
        titles = json.loads(titles_file.read_text("utf-8")) if titles_file.is_file() else None
        user_doc = tuple(meta["user_doc"])
        backbone = (name, meta["backbone"]["hash"], meta["training_path"])
        extras = {"bert": bert, "tokenizer": tokenizer, "item_titles": titles, "device": device}
        extras.update(ids=ids, id_vocab=id_vocab)
        encoder = cls(config, adapter, user_tower, *backbone, **extras, user_doc=user_doc)
        encoder.encoder_hash = meta["encoder_hash"]
        return encoder


def _digest(towers: bytes, backbone_hash: str, id_vocab: bytes) -> str:
    """encoder_hash: the towers' weights, the backbone and the id vectors' item ids."""
    return hashlib.sha256(towers + backbone_hash.encode() + id_vocab).hexdigest()[:16]


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "encoder.json"
    if not path.is_file():
        raise EncoderLoadError(f"{directory}: no encoder.json; expected a saved encoder directory")
    meta = json.loads(path.read_text("utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise EncoderLoadError(
            f"{path}: format {meta.get('format')!r}, this version reads format {FORMAT_VERSION}"
        )
    return meta


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _has_text(text: str | None) -> bool:
    return text is not None and bool(str(text).strip())


def _checked_history(history: np.ndarray, n_items: int, row: int) -> np.ndarray:
    h = np.asarray(history, dtype=np.int64).reshape(-1)
    if len(h) and (h.min() < 0 or h.max() >= n_items):
        bad = h[(h < 0) | (h >= n_items)][:5].tolist()
        raise ValueError(f"histories[{row}]: item_idx must be in [0, {n_items}), found {bad}")
    return h
