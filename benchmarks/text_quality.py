"""Benchmark: content-only quality on MovieLens — zero-shot MiniLM vs our trained text towers.

Protocol: leave-last-one-out per user by timestamp (test), the interaction before it validation
(early stopping only); every interaction is a positive; all items ranked, the user's earlier
items excluded; Recall@10 / NDCG@10 over users with >= 2 interactions (the split's test users).
Every method sees the same item documents (recsys.text) and the same train + valid history:
  zero-shot  MiniLM pooled item vectors, user = mean of the last 20 history items (cosine)
  towers     our CPU "frozen" path trained on train, encoding the train + valid history
  popularity train + valid counts (a sanity peer, not a text model)
Figures of one dataset come from one run, side by side; the towers' train time is wall-clock
(feature extraction excluded: it is timed on its own, once, and shared by both text methods).

    python benchmarks/text_quality.py [--datasets ml-latest-small ml-100k] [--set dim=128 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, header  # noqa: E402

K = 10
ZERO_SHOT_LAST = 20


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def _zero_shot_users(features: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    items = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    users = np.zeros((len(histories), items.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        if len(history):
            users[row] = items[history[-ZERO_SHOT_LAST:]].mean(axis=0)
    users /= np.linalg.norm(users, axis=1, keepdims=True).clip(1e-12)
    return users, items


def run_dataset(name: str, overrides: dict, work: Path) -> list[tuple[str, dict, float]]:
    from recsys.config import EncoderConfig, SplitConfig, TextConfig
    from recsys.data.loaders import load_dataset
    from recsys.data.split import split_interactions
    from recsys.encoder.features import Featurizer
    from recsys.schema import ITEM_IDX
    from recsys.text.documents import item_documents, profile_texts
    from recsys.training.examples import user_sequences
    from recsys.training.train import train_encoder
    from recsys.training.validation import held_out, ranking_metrics

    dataset = load_dataset(SHARED / name)
    split = split_interactions(dataset.interactions, SplitConfig(n_valid=1, n_test=1))
    config = EncoderConfig(**{"device": "cpu", "path": "frozen", **overrides})
    texts = item_documents(dataset, TextConfig())
    start = time.perf_counter()
    features = Featurizer.for_encoder(config, "cpu", cache_dir=work / "cache")(texts)
    feature_seconds = time.perf_counter() - start
    seen = pl.concat([split.train, split.valid])
    test = held_out(user_sequences(seen, dataset.n_users), split.test)
    rows = []

    start = time.perf_counter()
    users, items = _zero_shot_users(features, test.histories)
    rows.append(("zero-shot MiniLM", ranking_metrics(users, items, test, K),
                 time.perf_counter() - start))  # fmt: skip

    counts = np.bincount(seen[ITEM_IDX].to_numpy(), minlength=dataset.n_items).astype(np.float32)
    pop_users = np.ones((len(test.users), 1), np.float32)
    rows.append(("popularity", ranking_metrics(pop_users, counts[:, None], test, K), 0.0))

    start = time.perf_counter()
    result = train_encoder(dataset, split, config, TextConfig(), work / f"towers-{name}",
                           progress=False, cache_dir=work / "cache")  # fmt: skip
    seconds = time.perf_counter() - start
    encoder = result.encoder
    tower_items = encoder.with_id_vectors(
        encoder.item_vectors_from_features(features), dataset.item_map.ids
    )
    profiles = profile_texts(dataset)
    tower_users = encoder.encode_users(
        test.histories, tower_items, [profiles[u] for u in test.users]
    )
    rows.append(
        ("text towers (frozen)", ranking_metrics(tower_users, tower_items, test, K), seconds)
    )
    print(f"\n## {name}: {dataset.n_users} users, {dataset.n_items} items, "
          f"{dataset.interactions.height} interactions; {len(test.users)} test users")  # fmt: skip
    print(f"item features (MiniLM, {config.max_length} tokens): {feature_seconds:.1f}s "
          "(cached on disk afterwards)")  # fmt: skip
    print(f"towers: {len(result.history)} epochs, best {result.best_epoch}, "
          f"{result.examples_per_second:.0f} examples/s, plan {result.plan}")  # fmt: skip
    print("valid ndcg by epoch: " + " ".join(f"{h['valid_ndcg']:.4f}" for h in result.history))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-latest-small", "ml-100k"])
    parser.add_argument("--set", nargs="*", default=[], help="EncoderConfig overrides: key=value")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="keeps the feature cache")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    header("text quality: zero-shot MiniLM vs trained text towers (content only)")
    overrides = _parse_sets(args.set)
    print(f"encoder overrides: {overrides or 'none (EncoderConfig defaults)'}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="text_quality-"))
    for name in args.datasets:
        rows = run_dataset(name, overrides, work)
        base = rows[0][1]
        print(f"| method | Recall@{K} | NDCG@{K} | NDCG vs zero-shot | seconds |")
        print("|---|---|---|---|---|")
        for method, metrics, seconds in rows:
            ratio = metrics["ndcg"] / base["ndcg"] if base["ndcg"] else float("nan")
            print(f"| {method} | {metrics['recall']:.4f} | {metrics['ndcg']:.4f} | "
                  f"{ratio:.2f}x | {seconds:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
