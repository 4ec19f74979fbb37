"""Pipeline: offline A/B of two recommender models (bundles) on the same held-out interactions.

Both models rank the same users, whose history is everything before their held-out part; the
per-user metrics, statistics and verdict come from recsys.evaluation (one metrics kernel). The
result carries the users' external ids (the per-user export) and example lists of a few sampled
users (titles of their history beside A's and B's lists). Used by `recsys evaluate` and by the
nightly gate, so the report and the gate agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys import bundle, tracking
from recsys.config import PipelineConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.evaluation.evaluate import ABResult, EvalInput, evaluate_ab, evaluate_variant
from recsys.evaluation.examples import ExampleList, example_lists, item_titles, sample_rows
from recsys.pipeline import fit
from recsys.ranking.model import RecommenderModel


@dataclass(frozen=True)
class HeldOut:
    """Held-out users by external id, with their prior history; and the EvalInput arrays."""

    user_ids: list[str]
    histories: list[list[str]]
    data: EvalInput


def held_out(dataset: Dataset, split: Split) -> HeldOut:
    held = fit.eval_set([split.train, split.valid], split.test, dataset.n_users)
    popularity = np.asarray(
        fit.matrix(split.train, dataset.n_users, dataset.n_items).sum(axis=0)
    ).ravel()  # (n_items,) training interactions per item
    data = EvalInput(
        relevant=held.relevant,
        history_lengths=np.array([q.history.size for q in held.queries], dtype=np.int64),
        item_popularity=popularity,
    )
    return HeldOut(
        dataset.user_map.to_ids(held.user_idx),
        [dataset.item_map.to_ids(q.history) for q in held.queries],
        data,
    )


def ranked_matrix(model: RecommenderModel, dataset: Dataset, held: HeldOut, k: int) -> np.ndarray:
    """(n_users, k) the model's top-k as the dataset's item_idx; -1 pads (and unknown items)."""
    ranked = model.rank_users(held.user_ids, k, held.histories)  # user_id, rank, item_id, score
    row_of = {user_id: row for row, user_id in enumerate(held.user_ids)}
    out = np.full((len(held.user_ids), k), -1, dtype=np.int64)
    rows = np.array([row_of[u] for u in ranked["user_id"].to_list()], dtype=np.int64)
    ranks = ranked["rank"].to_numpy().astype(np.int64) - 1
    out[rows, ranks] = dataset.item_map.to_indices(ranked["item_id"].to_list())
    return out


def item_vectors(model: RecommenderModel, dataset: Dataset) -> np.ndarray | None:
    """The model's text-tower item vectors in dataset order (zero rows for unknown items)."""
    text = model.ranker.sources.get("text")
    vectors = getattr(text, "item_vectors", None)
    if vectors is None:
        return None
    out = np.zeros((dataset.n_items, vectors.shape[1]), dtype=np.float32)
    idx = model.item_map.to_indices(dataset.item_map.ids)
    out[idx >= 0] = vectors[idx[idx >= 0]]
    return out


def compare_models(
    model_a: RecommenderModel,
    model_b: RecommenderModel,
    dataset: Dataset,
    split: Split,
    config: PipelineConfig,
    names: tuple[str, str] = ("A", "B"),
) -> ABResult:
    held = held_out(dataset, split)
    vectors = item_vectors(model_b, dataset)
    if vectors is None:
        vectors = item_vectors(model_a, dataset)
    data = EvalInput(
        held.data.relevant, held.data.history_lengths, held.data.item_popularity, vectors
    )
    k = config.eval.k
    ranked_a = ranked_matrix(model_a, dataset, held, k)
    ranked_b = ranked_matrix(model_b, dataset, held, k)
    result = evaluate_ab(
        ranked_a, ranked_b, data, config.eval, config.blend.segment_bounds, names, held.user_ids
    )
    ranked = {names[0]: ranked_a, names[1]: ranked_b}
    result.examples = examples(dataset, held, ranked, config.eval.examples, config.eval.seed)
    return result


def examples(
    dataset: Dataset, held: HeldOut, ranked: dict[str, np.ndarray], n: int, seed: int
) -> list[ExampleList]:
    """Example lists of n users sampled with the report's seed; ranked: {name: (n_users, k)}."""
    rows = sample_rows(len(held.user_ids), n, seed)
    to_ids = dataset.item_map.to_ids
    lists = {
        name: [to_ids(matrix[r][matrix[r] >= 0]) for r in rows] for name, matrix in ranked.items()
    }
    return example_lists(
        [held.user_ids[r] for r in rows],
        [held.histories[r] for r in rows],
        [to_ids(held.data.relevant[r]) for r in rows],
        lists,
        item_titles(dataset.items, dataset.item_text_columns),
    )


def evaluate_model(model: RecommenderModel, dataset: Dataset, split: Split, config: PipelineConfig):
    """One model alone (the first nightly has no champion): its VariantResult."""
    held = held_out(dataset, split)
    ranked = ranked_matrix(model, dataset, held, config.eval.k)
    return evaluate_variant(ranked, held.data, config.eval, "candidate")


def resolve_bundle(name: str, workdir: Path, registered_model: str) -> Path:
    """A bundle path, a version under workdir/bundles, CURRENT/CHALLENGER, or an MLflow alias."""
    path = Path(name)
    if (path / bundle.MANIFEST).is_file():
        return path
    if (bundle.bundles_dir(workdir) / name / bundle.MANIFEST).is_file():
        return bundle.bundles_dir(workdir) / name
    if name.upper() in bundle.POINTERS:
        version = bundle.read_pointer(workdir, name.upper())
        if version:
            return bundle.bundles_dir(workdir) / version
    found = tracking.bundle_for_alias(registered_model, name)
    if found is not None and (Path(found[1]) / bundle.MANIFEST).is_file():
        return Path(found[1])
    raise bundle.BundleError(
        f"{name!r}: not a bundle directory, a version in {bundle.bundles_dir(workdir)}, "
        f"CURRENT/CHALLENGER, or an alias of registered model {registered_model!r}"
    )
