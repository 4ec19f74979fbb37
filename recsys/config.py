"""Typed configuration: one frozen model per component, composed into PipelineConfig (TOML).

Unknown keys are an error. `config_hash` is stamped on every artifact and MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.errors import UserError
from recsys.sources import BY_NAME, DEFAULT_SOURCES, SourceName


class _Section(BaseModel):
    # Each field's docstring is its description: `recsys config schema`, configs/default.toml.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class DataConfig(_Section):
    """How raw data becomes canonical tables (recsys.data)."""

    item_text_columns: list[str] | None = None
    """Item columns forming the item document, in order; unset: all string columns, title first."""
    user_text_columns: list[str] | None = None
    """User columns forming the profile text; unset: all string columns of the users table."""
    dedupe: Literal["keep", "first", "last"] = "last"
    """Repeated (user, item) interactions: keep them all, or only the first or the last one."""
    min_user_interactions: int = Field(1, ge=1)
    """Users with fewer interactions are dropped (k-core filter, applied with the item one)."""
    min_item_interactions: int = Field(1, ge=1)
    """Items with fewer interactions lose those interactions (they stay in the catalog as cold)."""
    rating_threshold: float | None = None
    """Ratings below this are dropped (explicit -> positive feedback); unset: keep all."""


class SplitConfig(_Section):
    """Held-out interactions (recsys.data.split)."""

    method: Literal["leave_last_out", "time_cut"] = "leave_last_out"
    """leave_last_out: each user's newest interactions are held out; time_cut: all after a time."""
    n_test: int = Field(1, ge=1)
    """leave_last_out: test interactions per user (they judge the candidate at the gate)."""
    n_valid: int = Field(1, ge=0)
    """leave_last_out: validation interactions per user before the test ones (tuning)."""
    time_cut: str | None = None
    """time_cut: ISO-8601 or epoch seconds; interactions at or after it are held out."""
    min_history: int = Field(1, ge=1)
    """Users need this many training interactions to have any held out."""


class TextConfig(_Section):
    """Item and user documents (recsys.text)."""

    max_item_chars: int = Field(512, ge=16)
    """Item documents are cut to this many characters."""
    max_user_chars: int = Field(512, ge=16)
    """User documents (profile text + history titles) are cut to this many characters."""
    user_history_titles: int = Field(10, ge=0)
    """Titles of the newest history items added to a user's document (newest first)."""
    title_column: str = "title"
    """The item column used as the title (first in the document, and in explanations)."""


class EncoderConfig(_Section):
    """BERT two-tower text encoder (recsys.encoder)."""

    model_name_or_path: str = "packaged:all-MiniLM-L6-v2"
    """Base text model: Hugging Face id or local path; "packaged:NAME" = the pip-installed copy."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the towers train and embed; auto: CUDA when available."""
    path: Literal["auto", "full", "frozen"] = "auto"
    """full: fine-tune BERT (GPU); frozen: heads over cached BERT features (CPU); auto: device."""
    user_tower: Literal["auto", "sequence", "bert"] = "auto"
    """sequence: causal transformer over history item vectors; bert: BERT over the user document."""
    trainable_layers: int = Field(0, ge=0)
    """CPU path: the top BERT layers trained over cached hidden states (0: heads only)."""
    dim: int = Field(128, ge=8)
    """Output dimension of both towers (and width of the user sequence transformer)."""
    max_length: int = Field(64, ge=8)
    """Tokens per item document."""
    user_max_length: int = Field(128, ge=8)
    """Tokens per user document (bert user tower)."""
    history_len: int = Field(20, ge=1)
    """Newest history items fed to the sequence user tower (50 tested worse on ml-latest-small)."""
    id_vectors_min_count: int = Field(5, ge=0)
    """Items with at least this many training interactions get a learned id vector added to
    their text vector (text towers + SASRec-style item embeddings); others, and new items, keep
    the text vector alone. 0: off. Every single-process path (frozen, trainable_layers, full);
    data-parallel training ([compute] backend = "ray", train_workers > 1) trains text-only
    towers and says so in the log."""
    seq_layers: int = Field(2, ge=1)
    """Transformer layers of the sequence user tower."""
    seq_heads: int = Field(4, ge=1)
    """Attention heads of the sequence user tower."""
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    """Dropout in the towers' heads and the sequence transformer."""
    temperature: float = Field(0.1, gt=0.0)
    """Softmax temperature of the training loss (ml-100k valid NDCG@10: .130 vs .123 at 0.05)."""
    softmax: Literal["auto", "full", "sampled"] = "auto"
    """full: over the whole catalog; sampled: in-batch negatives; auto: full on the frozen path."""
    logq_correction: bool = True
    """Correct in-batch negatives for item popularity (sampled softmax only)."""
    hard_negatives: int = Field(0, ge=0)
    """Extra negatives per example mined by the collaborative model (pair-trained paths)."""
    batch_size: int = Field(256, ge=2)
    """(history, next item) pairs per step on the BERT-training paths."""
    seq_batch_size: int = Field(32, ge=1)
    """Sequences per step on the frozen path (every position of a sequence trains)."""
    lr: float = Field(2e-3, gt=0.0)
    """Learning rate of the heads, the adapter and the sequence tower."""
    bert_lr: float = Field(2e-5, gt=0.0)
    """Learning rate of fine-tuned BERT layers."""
    freeze_bottom_layers: int = Field(0, ge=0)
    """GPU path: bottom BERT layers kept frozen (MoRec's recipe)."""
    epochs: int = Field(30, ge=1)
    """Most training epochs (early stopping on validation NDCG@10 usually ends sooner)."""
    patience: int = Field(8, ge=1)
    """Epochs without a better validation NDCG@10 before stopping. One held-out item per user
    makes the curve noisy on sparse data: outside-in on ml-latest-small-sparse8, with 4 two of
    four seeds stopped after 6 and 10 epochs (NDCG@10 0.0355), with 8 every seed's best epoch
    was 18-24 (0.0396); ml-100k-sparse8 0.0707 either way, ml-100k the same lists (BENCHMARKS)."""
    max_minutes: float = Field(30.0, gt=0.0)
    """Training time cap; the best epoch so far is kept (2-core CPU: 25 minutes still improved)."""
    seed: int = 42
    """Seed of the encoder's initialisation and data order."""
    bf16: bool = True
    """bfloat16 autocast on CUDA."""
    embed_batch_size: int = Field(0, ge=0)
    """Texts per embedding batch; 0: 32 on CPU, 128 on GPU."""
    runtime: Literal["auto", "onnxruntime", "torch"] = "auto"
    """Batch embedding of the frozen backbone on CPU; auto: ONNX Runtime on CPU, torch on GPU."""
    retrain_every_days: int = Field(7, ge=0)
    """Nightly: retrain the encoder when the newest one is this old, else reuse it; 0: every run."""

    def embed_batch(self, device: str) -> int:
        """Texts per embedding batch on `device`: embed_batch_size, or by device when 0 (2,000
        ml-latest-small documents on one CPU core: 13.3 s at 32, 14.1 s at 64, 16.7 s at 128)."""
        if self.embed_batch_size:
            return self.embed_batch_size
        return 32 if str(device) == "cpu" else 128


class IndexConfig(_Section):
    """FAISS index over item vectors (recsys.index)."""

    factory: str = "auto"
    """auto: Flat up to exact_max_items, then ivfpq (HNSW32 up to hnsw_max_items first, if that
    is larger); ivfpq: IVF-PQ + exact re-rank; ivf: IVF,Flat; or any FAISS factory string."""
    exact_max_items: int = Field(100_000, ge=1)
    """Catalogs up to this size are searched exactly and the blend scores every item; above it
    the blend ranks the union of each source's own top candidates (recsys.ranking.retrieval)."""
    hnsw_max_items: int = Field(100_000, ge=1)
    """auto: HNSW32 for catalogs above exact_max_items up to this size. Default: no HNSW tier (at
    200k and 1M items IVF-PQ + re-rank had higher recall, more q/s and fewer bytes per item)."""
    metric: Literal["ip"] = "ip"
    """Inner product (the towers' vectors are L2-normalised, so this is cosine)."""
    nprobe: int = Field(32, ge=1)
    """IVF indexes (ivf, ivfpq): inverted lists visited per query (ivfpq at 1M: 16 -> .977, 32
    -> .996 recall@10 with rerank_factor 20)."""
    rerank_factor: int = Field(20, ge=1)
    """ivfpq: rerank_factor * k candidates from the PQ codes are re-scored by exact inner product
    with the float vectors the index stores; 1: no re-rank (1M items: 1 -> .52, 10 -> .974,
    20 -> .996 recall@10 at nprobe 32)."""
    ef_search: int = Field(128, ge=1)
    """HNSW indexes: search breadth per query."""
    use_gpu: Literal["auto", "never"] = "auto"
    """Build and search on the GPU when faiss-gpu and a GPU are present (auto), or never."""
    recall_sample: int = Field(1000, ge=10)
    """Queries used to measure the index's recall@10 against exact search at build time."""


class CollabConfig(_Section):
    """Collaborative model (recsys.collab)."""

    model: Literal["lightfm", "als", "auto"] = "lightfm"
    """lightfm: LightFM (WARP by default); als: implicit's alternating least squares; auto: the
    nightly fits both on the split's training part and keeps the one with the better validation
    NDCG@k (its `tune` step)."""
    tune: bool = False
    """Grid-search the model's main hyperparameters on validation in the nightly's `tune` step
    (ALS: factors, regularization, alpha; LightFM: factors, learning_rate; the grid is
    recsys.training.collab_tuning.GRIDS); the values here are then only the starting point."""
    factors: int = Field(64, ge=2)
    """Latent factors per user and item."""
    epochs: int = Field(30, ge=1)
    """LightFM training epochs."""
    fits: int = Field(3, ge=1)
    """LightFM: models fitted from seeds seed, seed + 1, ... and served as one, their factors
    side by side (so scores add up): WARP's seed-to-seed spread averages out (outside-in on
    ml-100k one fit moved the bundle by +-2 % from seed to seed; 2, 3 and 4 fits scored 0.1326,
    0.1355 and 0.1367; 4 took make run past its time bound). Each fit costs a full training;
    with threads = 0 they train side by side. ALS fits once (its alternating solves land on
    nearly the same factors)."""
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = "warp"
    """LightFM loss."""
    learning_rate: float = Field(0.05, gt=0.0)
    """LightFM learning rate."""
    item_alpha: float = Field(0.0, ge=0.0)
    """LightFM L2 penalty on item features."""
    user_alpha: float = Field(0.0, ge=0.0)
    """LightFM L2 penalty on user features."""
    item_features: bool = False
    """LightFM hybrid mode: item features from item text and categories."""
    regularization: float = Field(0.01, ge=0.0)
    """ALS L2 regularisation."""
    alpha: float = Field(1.0, gt=0.0)
    """ALS confidence scale of an interaction."""
    iterations: int = Field(15, ge=1)
    """ALS iterations."""
    threads: int = Field(0, ge=0)
    """Training threads; 0: all cores, LightFM's fits (`fits`) then running side by side with
    the cores shared among them. Bit-for-bit repeatable LightFM fits need one thread each."""
    seed: int = 42
    """Seed of the collaborative model's initialisation."""


class NeighborsConfig(_Section):
    """Item-to-item neighbour source: RP3beta graph walk weights (recsys.ranking.neighbors)."""

    top_n: int = Field(100, ge=1)
    """Neighbours kept per item (the largest walk weights); a history sums its items' rows."""
    alpha: float = Field(0.5, gt=0.0)
    """Exponent on the walk's transition probabilities (RP3beta; 1: the plain P3 walk)."""
    beta: float = Field(0.0, ge=0.0)
    """Popularity penalty: a neighbour's weight is divided by its interaction count ** beta."""
    recency: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] = "auto"
    """A history item's row counts recency ** age, age = how many newer items the history has
    (the newest counts 1; 1.0: every item alike; a repeated item counts at its newest). "auto":
    chosen from 0.9, 0.8, 0.7, 0.5, 0.3 by how well the fitted frame's rest ranks each user's
    newest interaction in it (recsys.training.recency); the nightly chooses on the split's
    training part and fits the refit frames with that choice."""


class TransitionsConfig(_Section):
    """Item-to-item transitions source: what followed each item (recsys.ranking.transitions)."""

    top_n: int = Field(100, ge=1)
    """Followers kept per item (the largest weights); a history sums its items' rows."""
    window: int = Field(10, ge=1)
    """How many later interactions of the same user count as following an item."""
    gap_decay: float = Field(0.8, gt=0.0, le=1.0)
    """A follower `gap` interactions later counts gap_decay ** (gap - 1) (the next one: 1)."""
    recency: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] = "auto"
    """A history item's row counts recency ** age, as [neighbors] recency; "auto": chosen the
    same way (recsys.training.recency)."""


class TextNeighborsConfig(_Section):
    """Text-neighbour source: best cosine to a history item (recsys.ranking.text_neighbors)."""

    recency: float = Field(0.9, gt=0.0, le=1.0)
    """A history item's cosines count recency ** age (age 0: the newest; 1.0: every item alike)."""
    history_len: int = Field(20, ge=1)
    """The history's newest distinct items an item's text is compared with."""


class BlendConfig(_Section):
    """Candidate generation and per-segment blending (recsys.ranking)."""

    sources: list[SourceName] = list(DEFAULT_SOURCES)
    """Recommender sources blended (recsys.sources: text = the towers, collab = LightFM/ALS,
    popularity, neighbors = item-to-item RP3beta, [neighbors], transitions = what followed
    the history's items, [transitions], text_neighbors = the history's closest items by text,
    [text_neighbors], which needs text)."""
    candidates_per_source: int = Field(200, ge=1)
    """Candidates each source contributes before blending (large catalogs)."""
    segment_bounds: list[int] = [0, 5, 50]
    """History-length bounds of the segments with their own weights: 0 | 1-5 | 6-50 | >50."""
    weight_grid: int = Field(11, ge=2)
    """Grid points per weight when learning the blend weights on held-out interactions (11:
    steps of 0.1)."""
    weight_choice: Literal["best", "bagged"] = "bagged"
    """best: the grid point with the best held-out NDCG@k. bagged: the mean of the best grid
    points of `weight_bags` bootstrap resamples of the held-out users (Breiman's bagging): on a
    few hundred users the single best point moves with which users were held out."""
    weight_bags: int = Field(50, ge=1)
    """Bootstrap resamples of weight_choice = "bagged" (fixed seed: the same data, the same
    weights)."""
    normalize: Literal["zscore", "minmax", "rank"] = "zscore"
    """How each source's scores are normalised before they are weighted."""
    fixed_weights: dict[str, float] | None = None
    """Use these weights everywhere instead of learning them, e.g. {text = 0.7, collab = 0.3}."""
    cold_prior: float = Field(1.0, ge=0.0)
    """Weight of the text-predicted popularity prior for never-interacted items; 0: off."""

    @model_validator(mode="after")
    def _needed_sources_blended(self) -> BlendConfig:
        for name in self.sources:
            missing = [need for need in BY_NAME[name].needs if need not in self.sources]
            if missing:
                raise ValueError(
                    f"sources: {name} reads from {missing}, which is not among the sources "
                    f"{self.sources}; add it or leave {name} out"
                )
        return self


class EvalConfig(_Section):
    """Offline evaluation and A/B statistics (recsys.evaluation)."""

    k: int = Field(10, ge=1)
    """Cut-off of every ranking metric (NDCG@k, Recall@k, ...)."""
    metrics: list[str] = ["ndcg", "recall", "mrr", "map", "hit_rate"]
    """Metrics computed per user and reported."""
    primary_metric: str = "ndcg"
    """Pre-registered: the one metric (over all users) that decides the offline A/B verdict."""
    primary_family: list[str] = []
    """More pre-registered metrics, corrected with the primary one (the rest is exploratory)."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples for confidence intervals."""
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    """Significance level of the A/B tests."""
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    """Multiple-testing correction of the p-values, within each family."""
    test: Literal["ttest", "wilcoxon"] = "ttest"
    """Paired test behind the verdict (both are reported)."""
    min_lift: float = 0.0
    """Relative lift B/A - 1 a promotion needs besides significance."""
    seed: int = 0
    """Seed of the bootstrap and of the sampled example users."""
    examples: int = Field(5, ge=0)
    """Sampled users whose history and both lists the offline report shows."""
    live_primary_metric: Literal["hit_rate", "ctr"] = "hit_rate"
    """The metric that decides the live A/B read (recsys ab-report)."""
    srm_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    """Sample-ratio-mismatch test level: below it the live read gives no verdict."""

    @model_validator(mode="after")
    def _primary_among_metrics(self) -> EvalConfig:
        unknown = [m for m in (self.primary_metric, *self.primary_family) if m not in self.metrics]
        if unknown:
            raise ValueError(
                f"primary_metric / primary_family name {unknown}, not among metrics {self.metrics}"
            )
        return self


class GateConfig(_Section):
    """Promotion gate of the nightly job."""

    metric: str = "ndcg"
    """Metric the candidate is compared on against the champion."""
    tolerance: float = Field(0.02, ge=0.0)
    """Relative drop vs the champion still promoted."""
    floors: dict[str, float] = {"ndcg": 0.001}
    """Absolute minimums per metric a candidate must reach (default: refuse an all-zero one)."""
    min_users: int = Field(20, ge=0)
    """Held-out users a candidate must be judged on to be promoted; with fewer it is held."""


class NightlyConfig(_Section):
    """Nightly pipeline and publishing."""

    keep_bundles: int = Field(5, ge=1)
    """Published bundles kept for rollback, newest first (by the nightly's prune and `recsys gc`;
    CURRENT, CHALLENGER, the rollback target and pinned [serving] variants always are)."""
    keep_encoders: int = Field(2, ge=1)
    """Trained encoders kept under encoders/, newest first, besides those a kept run used; the
    embedding caches of the others go with them (bundles carry their own encoder copy)."""
    registered_model: str | None = Field(None, min_length=1)
    """MLflow registered-model name of the published bundles; unset: recsys-<work directory
    name>-<8 hex of its absolute path>, so two work directories never share one."""
    experiment: str = "recsys-nightly"
    """MLflow experiment of the nightly runs."""
    refit: bool = True
    """Publish sources refitted on every interaction given (collaborative model, popularity, the
    cold-item prior's counts) with the hyperparameters and blend weights chosen on the split; the
    gate and A/B reports still judge the split-fitted candidate. false: publish that candidate."""
    refit_weights: bool = True
    """With refit: learn the published blend's weights once more, where its sources stand as
    they will once published — the collaborative, popularity and neighbour sources (and the
    cold-item prior's counts) fitted on the split's train + valid parts, scored on its test
    part, which no source was fitted or early-stopped on; with refit_towers_epochs the towers
    too stand as published: trained as many more epochs over train + valid. The towers are
    early-stopped on valid, so valid over-rates them beside refitted sources. false: publish the
    weights learned on valid (the evaluated candidate's). Skipped with [blend] fixed_weights."""
    refit_towers_epochs: int = Field(0, ge=0)
    """With refit, > 0: the published text towers are the evaluated candidate's, trained this
    many more epochs over every interaction given (the newest ones the split held out included),
    and the published item vectors, index and known-user vectors come from them (refit_weights
    then scores towers trained as many epochs over train + valid). 0 (the default: outside-in it
    gained ×1.04 on ml-100k-sparse8 and lost ×0.95 on ml-100k, BENCHMARKS.md): publish the
    towers as the split trained them. The frozen path (the CPU default) only."""


class ServingConfig(_Section):
    """REST API."""

    max_k: int = Field(100, ge=1)
    """Largest k a request may ask for."""
    default_k: int = Field(10, ge=1)
    """k when a request does not say."""
    precomputed_k: int = Field(100, ge=0)
    """Every known user's top-k ranked at publish (0: none); plain requests are answered from it."""
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    """Larger request bodies are refused with 413."""
    poll_seconds: float = Field(1.0, ge=0.0)
    """Seconds between the workers' checks of the pointers (each request checks too); 0: only on
    /admin/reload, and then only with one worker (refused with several)."""
    switch_timeout_seconds: float = Field(120.0, gt=0.0)
    """How long /admin/reload and /admin/rollback wait for every worker to confirm."""
    variants: dict[str, float] = {}
    """A/B variants: bundle version or CURRENT/CHALLENGER -> traffic share; empty: CURRENT only."""
    salt: str = "recsys"
    """Salt of the user-id hash that assigns variants (change it to reshuffle users)."""
    exposure_log: str | None = None
    """Exposure log for `recsys ab-report`: each process writes NAME.<host>.<pid>.jsonl beside
    this path (JSON lines); unset: no log."""


class LiveConfig(_Section):
    """Between nightlies: overlay items, hidden items, user events (recsys.live_store)."""

    store: str = "sqlite"
    """Where overlay items and events live: "sqlite" (<workdir>/live/live.db, WAL mode, shared by
    every API worker of the host), a path to another SQLite file, or a Redis URL
    ("redis://host:port/db", "rediss://...", "unix:///path?db=N") shared by several API hosts."""
    redis_prefix: str = Field("recsys:live:", min_length=1)
    """With a Redis store: the prefix of its keys (several deployments may share one database)."""
    token_env: str = "RECSYS_ADMIN_TOKEN"
    """Environment variable holding the bearer token of the write routes (PUT and PATCH
    /v1/items/{id}, hide, unhide, POST /v1/events); unset or empty: those routes are disabled
    (404)."""
    max_text_chars: int = Field(4096, ge=64)
    """Most characters in one text column of an upserted item; longer is refused with 422."""
    max_events: int = Field(200, ge=1)
    """Most events one POST /v1/events may carry (422 beyond); at most ~300 bytes each, so 200
    fit the default [serving] max_body_bytes (a larger body is a 413)."""
    poll_seconds: float = Field(0.2, ge=0.0)
    """How often a worker checks the store's change counter (on requests; 0: every request)."""
    unknown_items: Literal["refuse"] = "refuse"
    """An event naming an item neither the served bundle nor the overlay knows: refused (404
    unknown_item), and none of the batch is stored."""
    rerank_on_events: bool = False
    """A plain request of a known user with live events: false: the precomputed list, filtered
    (events' items removed, nothing reordered: fast); true: ranked from history + events once
    per event, that list kept per worker (rerank_cache) and filtered until the next event.
    Requests ranked live anyway (exclude, filter, explain, ...) always use history + events."""
    rerank_cache: int = Field(10_000, ge=0)
    """With rerank_on_events: users whose re-ranked list each worker keeps until their next
    event; 0: re-rank on every such request."""


class ComputeConfig(_Section):
    """Where the nightly's large loops run (recsys.compute); not in the run key nor any hash."""

    backend: Literal["local", "ray"] = "local"
    """local: in this process (as always); ray: batch embedding and per-user work fan out over a
    Ray cluster through Ray Data (needs the `ray` extra)."""
    address: str | None = None
    """Ray cluster to join, e.g. "ray://head:10001" or "auto"; unset: the cluster `ray job
    submit` started the job in (RAY_ADDRESS), else a local one on this machine."""
    workers: int = Field(2, ge=1)
    """Ray Data actors of the embedding and per-user steps (each loads the encoder once)."""
    train_workers: int = Field(2, ge=1)
    """Ray Train ranks of the nightly's encoder training with backend = "ray" (DDP over the towers
    on frozen features, recsys.training.ddp_encoder); 1: the encoder trains in the driver."""
    cpus_per_worker: float = Field(1.0, gt=0.0)
    """CPUs each actor or rank reserves; its torch / ONNX Runtime thread pool is capped to it."""
    gpus_per_worker: float = Field(0.0, ge=0.0)
    """GPUs each actor or rank reserves (0: CPU only; fractions share one GPU)."""
    batch_size: int = Field(1024, ge=1)
    """Rows (texts, users) per Ray Data batch sent to an actor."""


class PipelineConfig(_Section):
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    text: TextConfig = TextConfig()
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    collab: CollabConfig = CollabConfig()
    neighbors: NeighborsConfig = NeighborsConfig()
    transitions: TransitionsConfig = TransitionsConfig()
    text_neighbors: TextNeighborsConfig = TextNeighborsConfig()
    blend: BlendConfig = BlendConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    nightly: NightlyConfig = NightlyConfig()
    serving: ServingConfig = ServingConfig()
    live: LiveConfig = LiveConfig()
    compute: ComputeConfig = ComputeConfig()


# Sections that say where a job runs, not what it computes: left out of config_hash, so the run
# key (and every hash stamped on a bundle) is the same locally and on a cluster.
PLACEMENT_SECTIONS = frozenset({"compute"})
# Keys only the API reads (how it answers, polls, authenticates, logs): left out of config_hash
# too, so tuning the server does not make the next nightly retrain and republish the same model.
# [serving] precomputed_k (the published top-K) is read by the nightly and stays in; so does
# every key of the other sections. [live] data reaches a nightly only through --live, as data.
SERVE_ONLY_KEYS: dict[str, frozenset[str]] = {
    "serving": frozenset(
        {
            "max_k",
            "default_k",
            "max_body_bytes",
            "poll_seconds",
            "switch_timeout_seconds",
            "variants",
            "salt",
            "exposure_log",
        }
    ),
    "live": frozenset(
        {
            "store",
            "redis_prefix",
            "token_env",
            "max_text_chars",
            "max_events",
            "poll_seconds",
            "unknown_items",
            "rerank_on_events",
            "rerank_cache",
        }
    ),
}


class ConfigError(UserError, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


ENV_PREFIX = "RECSYS_"
ENV_DELIMITER = "__"  # RECSYS_<SECTION>__<KEY>, e.g. RECSYS_COLLAB__FACTORS=32


def load_config(
    path: str | Path | None = None,
    overrides: dict | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Defaults, then the TOML file, then RECSYS_<SECTION>__<KEY> variables of `environ`
    (os.environ when None), then nested `overrides`: each layer wins over the ones before it."""
    layers = config_layers(path, overrides, environ)
    raw: dict = {}
    for _, layer in layers:
        raw = _merge(raw, layer)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        where = " + ".join(name for name, _ in layers) or "config"
        lines = [f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def config_layers(
    path: str | Path | None = None,
    overrides: dict | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, dict]]:
    """The raw layers load_config merges, by name ("file <path>", "environment", "overrides");
    `recsys config show` uses them to say where each value came from."""
    layers = []
    if path is not None:
        layers.append((f"file {path}", _read_toml(Path(path))))
    env = env_overrides(os.environ if environ is None else environ)
    if env:
        layers.append(("environment", env))
    if overrides:
        layers.append(("overrides", overrides))
    return layers


def env_overrides(environ: Mapping[str, str]) -> dict:
    """{section: {key: value}} from RECSYS_<SECTION>__<KEY> variables. Lists and tables are
    written as JSON (RECSYS_BLEND__SOURCES='["text", "collab"]'); other values as plain text, which
    the config model converts ("32", "0.5", "true"). An unknown section or key is an error."""
    out: dict[str, dict] = {}
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_DELIMITER not in upper:
            continue
        section, _, key = upper[len(ENV_PREFIX) :].lower().partition(ENV_DELIMITER)
        field = _field(section, key)
        if field is None:
            raise ConfigError(
                f"environment: {name}: no config key {section}.{key} "
                f"(expected {ENV_PREFIX}<SECTION>{ENV_DELIMITER}<KEY>; see `recsys config schema`)"
            )
        out.setdefault(section, {})[key] = _env_value(name, value, field.annotation)
    return out


def _field(section: str, key: str):
    sections = PipelineConfig.model_fields
    if section not in sections:
        return None
    return sections[section].annotation.model_fields.get(key)


def _env_value(name: str, value: str, annotation: object) -> object:
    if not _is_container(annotation):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"environment: {name}: expected JSON (a list or table), found {value!r}: {exc}"
        ) from None


def _is_container(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin in (list, dict):
        return True
    return any(_is_container(arg) for arg in get_args(annotation) if arg is not type(None))


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None


def toml_value(value: object) -> str:
    """One value in TOML syntax (the types configs use: str, numbers, bools, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def documented_toml(config: PipelineConfig, origins: Mapping[str, str] | None = None) -> str:
    """A config as TOML with every key's description above it (configs/default.toml, `recsys
    config show`); `origins` ("section.key" -> layer name) marks values that are not defaults."""
    lines = []
    for section, field in PipelineConfig.model_fields.items():
        model = getattr(config, section)
        lines += [f"# {field.annotation.__doc__.strip()}", f"[{section}]"]
        for key, info in type(model).model_fields.items():
            lines += textwrap.wrap(
                info.description or "", 98, initial_indent="# ", subsequent_indent="# "
            )
            value = getattr(model, key)
            line = f"{key} = {toml_value(value)}" if value is not None else f"# {key} = (unset)"
            origin = (origins or {}).get(f"{section}.{key}")
            lines.append(line + (f"  # from {origin}" if origin else ""))
        lines.append("")
    return "\n".join(lines)


def value_origins(layers: list[tuple[str, dict]]) -> dict[str, str]:
    """ "section.key" -> the last layer (of config_layers) that set it."""
    out = {}
    for name, layer in layers:
        for section, values in layer.items():
            for key in values if isinstance(values, dict) else ():
                out[f"{section}.{key}"] = name
    return out


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_hash(config: BaseModel) -> str:
    """Short stable hash of a config (or one section of it); a PipelineConfig's placement
    sections ([compute]) and the keys only the API reads (SERVE_ONLY_KEYS) are left out."""
    exclude = None
    if isinstance(config, PipelineConfig):
        exclude = {name: True for name in PLACEMENT_SECTIONS}
        exclude |= {name: set(keys) for name, keys in SERVE_ONLY_KEYS.items()}
    blob = json.dumps(config.model_dump(mode="json", exclude=exclude), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
