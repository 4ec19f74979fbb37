"""Pipeline: what a published bundle's manifest says about the run, and copying the model into
the bundle's staging directory (recsys.bundle publishes it).

Reads the run's Context (config, data, earlier step results, item vectors); writes nothing itself.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import config_hash
from recsys.pipeline.context import ENCODER, INDEX, ITEM_VECTORS, Context

# Versions stamped on every bundle (the manifest's library_versions).
LIBRARIES = (
    "recsys-engine",
    "torch",
    "transformers",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "lightfm-next",
    "implicit",
    "polars",
    "numpy",
    "mlflow",
)


def manifest_fields(
    ctx: Context, metrics: dict[str, float], gate: dict[str, Any]
) -> dict[str, Any]:
    """Everything the manifest records besides the files: lineage, metrics, gate, model facts."""
    fields: dict[str, Any] = {
        "run_key": ctx.run_key,
        "data_hash": ctx.data_hash,
        "config_hash": config_hash(ctx.config),
        "mlflow_run_id": ctx.run_id,
        "metrics": metrics,
        "gate": gate,
        "item_count": ctx.dataset.n_items,
        "user_count": ctx.dataset.n_users,
        "sources": list(ctx.config.blend.sources),
        "library_versions": library_versions(),
        "fit": fit_record(ctx),
    }
    if ctx.live is not None:  # what of the live store this bundle contains (LiveStore.retire)
        keys = ("store", "events_through", "events", "items")
        fields["live"] = {k: ctx.live[k] for k in keys if k in ctx.live}
    if ctx.uses_text:
        encoder = ctx.result(ctx.providers[ENCODER])
        index = ctx.result(ctx.providers[INDEX])
        vectors = np.load(ctx.output(ITEM_VECTORS), mmap_mode="r")
        fields.update(
            encoder_name=ctx.config.encoder.model_name_or_path,
            encoder_hash=encoder["encoder_hash"],
            embedding_dim=int(vectors.shape[1]),
            index_type=index["factory"],
            ann_recall_at_10=index["recall_at_10"],
        )
    return fields


def fit_record(ctx: Context) -> dict[str, Any]:
    """What the evaluated candidate and the published ranker were fitted on (MLflow gets the same
    as tags): interactions and the fitted-source cache key of each."""
    evaluated = {"interactions": ctx.split.train.height, "sources_key": ctx.result("collab")["key"]}
    if ctx.uses_text:
        evaluated["encoder_hash"] = ctx.result("encoder")["encoder_hash"]
    record: dict[str, Any] = {"refit": ctx.config.nightly.refit, "evaluated": evaluated}
    record["collab"] = ctx.fit_config().collab.model_dump(mode="json")  # after the tune step
    if ctx.config.nightly.refit:
        shifted = ctx.steps.done("refit_weights")  # None: the weights learned on valid
        record["published"] = {
            "interactions": ctx.dataset.interactions.height,
            "sources_key": ctx.result("refit")["key"],
            "weights_learned_on": "valid" if shifted is None else "test",
        }
        towers = ctx.steps.done("refit_encoder")  # None: the split-trained towers
        if towers is not None:
            keys = ("encoder_hash", "refit_from", "epochs", "interactions")
            record["published"]["towers"] = {k: towers["result"][k] for k in keys}
        if shifted is not None:  # what the weights' sources were fitted on (train + valid)
            interactions = ctx.split.train.height + ctx.split.valid.height
            key = shifted["result"]["key"]
            record["weights"] = {"interactions": interactions, "sources_key": key}
    return record


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())


def save_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
