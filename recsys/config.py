"""Typed configuration: one frozen model per component, composed into PipelineConfig (TOML).

Unknown keys are an error. `config_hash` is stamped on every artifact and MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.errors import UserError
from recsys.sources import SOURCES, SourceName


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """How raw data becomes canonical tables (recsys.data)."""

    item_text_columns: list[str] | None = None  # None: all string columns, title first
    user_text_columns: list[str] | None = None  # None: all string columns of the users table
    dedupe: Literal["keep", "first", "last"] = "last"  # repeated (user, item) interactions
    min_user_interactions: int = Field(1, ge=1)
    min_item_interactions: int = Field(1, ge=1)
    rating_threshold: float | None = None  # ratings below it are dropped (explicit -> positive)


class SplitConfig(_Section):
    """Held-out interactions (recsys.data.split)."""

    method: Literal["leave_last_out", "time_cut"] = "leave_last_out"
    n_test: int = Field(1, ge=1)  # leave-last-N-out: N test interactions per user
    n_valid: int = Field(1, ge=0)  # and N validation interactions before them
    time_cut: str | None = None  # ISO-8601 or epoch seconds, for method = "time_cut"
    min_history: int = Field(1, ge=1)  # users need this many training interactions to be held out


class TextConfig(_Section):
    """Item and user documents (recsys.text)."""

    max_item_chars: int = Field(512, ge=16)
    max_user_chars: int = Field(512, ge=16)
    user_history_titles: int = Field(10, ge=0)  # newest first
    title_column: str = "title"


class EncoderConfig(_Section):
    """BERT two-tower text encoder (recsys.encoder)."""

    model_name_or_path: str = "packaged:all-MiniLM-L6-v2"  # HF id or path; "packaged:" = pip pkg
    device: Literal["auto", "cpu", "cuda"] = "auto"
    path: Literal["auto", "full", "frozen"] = "auto"  # full fine-tune (GPU) or cached frozen (CPU)
    user_tower: Literal["auto", "sequence", "bert"] = "auto"
    trainable_layers: int = Field(0, ge=0)  # CPU path: top BERT layers trained over cached states
    dim: int = Field(128, ge=8)  # output dimension of both towers (and of the user transformer)
    max_length: int = Field(64, ge=8)  # tokens per item document
    user_max_length: int = Field(128, ge=8)  # tokens per user document (bert user tower)
    history_len: int = Field(20, ge=1)  # newest items fed to the sequence user tower (50: worse)
    seq_layers: int = Field(2, ge=1)
    seq_heads: int = Field(4, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    temperature: float = Field(0.1, gt=0.0)  # ml-100k valid NDCG@10: 0.130 vs 0.123 at 0.05
    # auto: whole-catalog softmax on the frozen path (it validates better), in-batch otherwise
    softmax: Literal["auto", "full", "sampled"] = "auto"
    logq_correction: bool = True
    hard_negatives: int = Field(0, ge=0)  # per example, mined by the collaborative model
    batch_size: int = Field(256, ge=2)  # (history, next item) pairs per step: BERT-training paths
    seq_batch_size: int = Field(32, ge=1)  # sequences per step: frozen path (every position trains)
    lr: float = Field(2e-3, gt=0.0)  # heads, adapter and sequence tower
    bert_lr: float = Field(2e-5, gt=0.0)
    freeze_bottom_layers: int = Field(0, ge=0)  # GPU path (MoRec's recipe)
    epochs: int = Field(30, ge=1)
    patience: int = Field(4, ge=1)  # validation NDCG is noisy on small catalogs
    max_minutes: float = Field(30.0, gt=0.0)  # training cap (2-core CPU: 25 min still improved)
    seed: int = 42
    bf16: bool = True  # autocast on CUDA
    embed_batch_size: int = Field(0, ge=0)  # texts per batch; 0: 32 on CPU, 128 on GPU
    runtime: Literal["auto", "onnxruntime", "torch"] = "auto"  # CPU batch embedding of the backbone
    retrain_every_days: int = Field(7, ge=0)  # nightly: 0 = every run

    def embed_batch(self, device: str) -> int:
        """Texts per embedding batch on `device`: embed_batch_size, or by device when 0 (2,000
        ml-latest-small documents on one CPU core: 13.3 s at 32, 14.1 s at 64, 16.7 s at 128)."""
        if self.embed_batch_size:
            return self.embed_batch_size
        return 32 if str(device) == "cpu" else 128


class IndexConfig(_Section):
    """FAISS index over item vectors (recsys.index)."""

    factory: str = "auto"  # any faiss factory string; auto: Flat below exact_max_items, else HNSW32
    exact_max_items: int = Field(100_000, ge=1)
    metric: Literal["ip"] = "ip"
    nprobe: int = Field(16, ge=1)
    ef_search: int = Field(128, ge=1)
    use_gpu: Literal["auto", "never"] = "auto"
    recall_sample: int = Field(1000, ge=10)  # queries used to measure ANN recall at build time


class CollabConfig(_Section):
    """Collaborative model (recsys.collab)."""

    model: Literal["lightfm", "als"] = "lightfm"
    factors: int = Field(64, ge=2)
    epochs: int = Field(30, ge=1)
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = "warp"
    learning_rate: float = Field(0.05, gt=0.0)
    item_alpha: float = Field(0.0, ge=0.0)
    user_alpha: float = Field(0.0, ge=0.0)
    item_features: bool = False  # LightFM hybrid mode: features from item text/categories
    regularization: float = Field(0.01, ge=0.0)  # ALS
    alpha: float = Field(1.0, gt=0.0)  # ALS confidence scale
    iterations: int = Field(15, ge=1)  # ALS
    threads: int = Field(0, ge=0)  # 0: all cores
    seed: int = 42


class BlendConfig(_Section):
    """Candidate generation and per-segment blending (recsys.ranking)."""

    sources: list[SourceName] = list(SOURCES)  # recsys.sources.REGISTRY
    candidates_per_source: int = Field(200, ge=1)
    segment_bounds: list[int] = [0, 5, 50]  # segments: 0 | 1-5 | 6-50 | >50 history items
    weight_grid: int = Field(6, ge=2)  # grid points per weight when learning
    normalize: Literal["zscore", "minmax", "rank"] = "zscore"
    fixed_weights: dict[str, float] | None = None  # skip learning, use these everywhere
    cold_prior: float = Field(1.0, ge=0.0)  # text popularity prior, never-interacted items; 0 off


class EvalConfig(_Section):
    """Offline evaluation and A/B statistics (recsys.evaluation)."""

    k: int = Field(10, ge=1)
    metrics: list[str] = ["ndcg", "recall", "mrr", "map", "hit_rate"]
    primary_metric: str = "ndcg"
    bootstrap: int = Field(1000, ge=100)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    test: Literal["ttest", "wilcoxon"] = "ttest"  # paired test behind the verdict (both reported)
    min_lift: float = 0.0  # relative lift B/A a promotion needs
    seed: int = 0


class GateConfig(_Section):
    """Promotion gate of the nightly job."""

    metric: str = "ndcg"
    tolerance: float = Field(0.02, ge=0.0)  # relative drop allowed vs the champion
    floors: dict[str, float] = {}  # absolute minimums, e.g. {ndcg = 0.01}


class NightlyConfig(_Section):
    """Nightly pipeline and publishing."""

    keep_bundles: int = Field(5, ge=1)
    registered_model: str = "recsys"
    experiment: str = "recsys-nightly"


class ServingConfig(_Section):
    """REST API."""

    max_k: int = Field(100, ge=1)
    default_k: int = Field(10, ge=1)
    # every known user's top-k ranked at publish (0: none); plain requests are answered from it
    precomputed_k: int = Field(100, ge=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    poll_seconds: float = Field(5.0, ge=0.0)  # 0: no polling for a new current bundle
    variants: dict[str, float] = {}  # variant name (bundle version or alias) -> traffic share
    salt: str = "recsys"
    exposure_log: str | None = None  # path of the JSON-lines exposure log


class PipelineConfig(_Section):
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    text: TextConfig = TextConfig()
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    collab: CollabConfig = CollabConfig()
    blend: BlendConfig = BlendConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    nightly: NightlyConfig = NightlyConfig()
    serving: ServingConfig = ServingConfig()


class ConfigError(UserError, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Read a TOML file (None: defaults) and apply nested `overrides` on top."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    raw = _merge(raw, overrides or {})
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        where = path if path is not None else "config"
        lines = [f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def toml_value(value: object) -> str:
    """One value in TOML syntax (the types configs use: str, numbers, bools, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_hash(config: BaseModel) -> str:
    """Short stable hash of a config (or one section of it)."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
