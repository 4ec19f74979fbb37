"""Pipeline: what every nightly step reads — the data, split, config, trackers, and accessors for
what earlier steps wrote (their results and files), so no step spells another's file names.

A step declares the files it `provides`; `Context.output(name)` finds that file in the directory
of the latest earlier step that provides it. A later step that provides the same name (say, the
same source refitted on every interaction) is then what the steps after it read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import CollabConfig, PipelineConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.pipeline import fit
from recsys.ranking.text_neighbors import KIND as TEXT_NEIGHBORS
from recsys.ranking.text_neighbors import TextNeighborsRecommender
from recsys.steps import StepRunner
from recsys.tracking import NullTracker, Tracker

# Files steps write into their own step directories (and later steps read through Context).
ENCODER = "encoder"  # not a file: the encoder step's result names the encoder directory
ITEM_VECTORS = "item_vectors.npy"  # (n_items, dim) item-tower vectors
INDEX = "index.faiss"
ITEM_BIAS = "item_bias.npy"  # (n_items,) the cold-item text prior; absent when off
WEIGHTS = "weights.json"  # SegmentWeights learned on the split
USER_VECTORS, USER_KEYS = "user_vectors.npy", "user_keys.npy"  # every user's tower vector + key
MODEL = "model"  # the complete serving model: what a bundle holds
# Where steps keep what outlives a run, under the work directory (recsys.pipeline.gc prunes them).
ENCODERS = "encoders"  # encoders/<time>-<config hash>/: one trained encoder each
TRAINED = "trained.json"  # in an encoder directory: its config hash and when it was trained
FEATURE_CACHE = "feature-cache"  # under <workdir>/encoders: pooled base-model features
EMBEDDING_CACHE = "cache/embeddings"  # item vectors by (encoder hash, text hash)
COLLAB_CACHE = "cache/collab"  # fitted sources by fit.frame_sources_key
TUNE_CACHE = "cache/tune"  # <key>.json: the tune step's choice for a training part and config


@dataclass(frozen=True)
class Step:
    """One nightly step: `run(ctx, out_dir) -> result` (JSON-able, kept in the step manifest),
    run only `when(ctx)`; it writes the files it `provides` into out_dir, and the parent run
    gets `tags(result)`. `preview(ctx)` says what it would reuse, for a dry run (reads only)."""

    name: str
    run: Callable[[Context, Path], dict[str, Any] | None]
    when: Callable[[Context], bool] = lambda ctx: True
    provides: tuple[str, ...] = ()
    tags: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    preview: Callable[[Context], str] | None = None


@dataclass
class Context:
    """What every step may read: the data, the split, config, work directory and trackers."""

    dataset: Dataset
    split: Split
    config: PipelineConfig
    workdir: Path
    steps: StepRunner  # the run's step manifests (runs/<run key>/)
    tracker: Tracker = field(default_factory=NullTracker)  # the current step's run
    parent: Tracker = field(default_factory=NullTracker)  # the nightly's run
    progress: bool = True
    track: bool = False  # MLflow tracking and registration on
    forced: bool = False  # --force: a new attempt; the fitted-source cache is refitted, not read
    run_key: str = ""
    data_hash: str = ""
    providers: dict[str, str] = field(default_factory=dict)  # file -> step that wrote it
    live: dict[str, Any] | None = None  # the live export merged into the data (its manifest record)

    @property
    def run_dir(self) -> Path:
        return self.steps.run_dir

    @property
    def run_id(self) -> str | None:
        return self.parent.run_id

    @property
    def uses_text(self) -> bool:
        """A collaborative-only config trains no encoder."""
        return "text" in self.config.blend.sources

    def fit_config(self) -> PipelineConfig:
        """The config sources are fitted with: the tune step's chosen [collab] when it ran, and
        once the collab step has fitted the split's training part, the item-graph sources'
        recency it chose there ("auto"), so the refit frames are fitted with the same choice."""
        config = self.config
        tuned = self.steps.done("tune")
        if tuned is not None:
            chosen = CollabConfig.model_validate(tuned["result"]["chosen"])
            config = config.model_copy(update={"collab": chosen})
        fitted = self.steps.done("collab")
        if fitted is not None:
            config = fit.with_recency(config, fitted["result"].get("recency", {}))
        return config

    def step_dir(self, name: str) -> Path:
        return self.run_dir / name

    def result(self, step: str) -> dict[str, Any]:
        """The result a finished step recorded in its manifest."""
        done = self.steps.done(step)
        if done is None:
            raise KeyError(f"step {step!r} has not finished in {self.run_dir}")
        return done["result"]

    def output(self, name: str) -> Path:
        """Where the latest earlier step providing `name` wrote it."""
        if name not in self.providers:
            raise KeyError(f"no earlier step provides {name!r} (provided: {self.providers})")
        return self.step_dir(self.providers[name]) / name

    def encoder_dir(self) -> Path:
        return Path(self.result(self.providers[ENCODER])["encoder_dir"])

    def encoder(self) -> Any:
        from recsys.encoder.model import TwoTowerEncoder  # torch: only for text configs

        return TwoTowerEncoder.load(self.encoder_dir())

    def item_vectors(self) -> np.ndarray:
        return np.load(self.output(ITEM_VECTORS), allow_pickle=False)

    def index(self) -> Any:
        from recsys.index.faiss_index import VectorIndex

        return VectorIndex.load(self.output(INDEX), self.config.index)

    def optional_array(self, name: str) -> np.ndarray | None:
        return optional_array(self.output(name))

    def feature_cache(self) -> Path:
        """Pooled base-model features of texts, shared by training, the prior and embedding."""
        return self.workdir / ENCODERS / FEATURE_CACHE

    def model_dir(self) -> Path:
        return self.output(MODEL)

    def blend_sources(
        self, encoder_dir: Path | None = None, at: Path | None = None
    ) -> dict[str, Any]:
        """The blend's sources from the files earlier steps wrote. With `encoder_dir`, the
        encoder is saved there (inside the model, so a bundle is whole) and the text source
        carries every known user's precomputed vector. With `at`, the frame sources and the
        cold-item prior are read from that directory instead (fitted there on another frame)."""
        names = self.config.blend.sources

        def path(name: str) -> Path:
            return self.output(name) if at is None else at / name

        out: dict[str, Any] = {}
        if "text" in names:
            encoder = self.encoder()
            if encoder_dir is not None:
                encoder.save(encoder_dir)
            out["text"] = fit.text_source(
                encoder,
                self.item_vectors(),
                bias=optional_array(path(ITEM_BIAS)),
                index=self.index(),
                exact_max_items=self.config.index.exact_max_items,
                encoder_dir=encoder_dir,
            )
            if encoder_dir is not None:
                known = self.optional_array(USER_VECTORS), self.optional_array(USER_KEYS)
                out["text"].set_known_users(*known)
        if TEXT_NEIGHBORS in names:  # bound to out["text"] by the BlendedRanker
            out[TEXT_NEIGHBORS] = TextNeighborsRecommender(self.config.text_neighbors)
        for name, source in fit.FRAME_SOURCES.items():
            if name in names:
                out[name] = source.kind.load(path(name))
        return out


def optional_array(path: Path) -> np.ndarray | None:
    """The .npy array at `path`, or None where no step wrote one."""
    return np.load(path, allow_pickle=False) if path.is_file() else None
