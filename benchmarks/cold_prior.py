"""Benchmark (issue 4): the text-predicted popularity prior for items nobody has interacted with
(recsys.ranking.prior; the nightly applies it with weight [blend] cold_prior = 1), its weight
and its input features.

On quality.py's cold-item round (10 % of the items, seeded, lose every interaction; each user's
cold interactions ranked among the cold items only) the towers are trained on the warm data as
in quality.py. The product's centred ridge regression (lambda 1) from an item's text vector to
log(1 + its warm interaction count) is fitted on the warm items and predicts a prior for the
cold ones; the cold items are then ranked by  cosine / temperature + beta * predicted log count
(the towers' logit plus a log prior). beta = 1 is fixed in advance (a logit plus a log prior);
0.5 and 2 are shown to say how sensitive it is, and are not a choice made on the test users.
Text vectors: the frozen MiniLM features (what the product uses) and the towers' own item vectors.

    python benchmarks/cold_prior.py [--datasets ml-100k ml-latest-small] [--encoder-minutes 15]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (same split, towers, metrics and Round as the quality benchmark)
from common import machine  # noqa: E402

BETAS = (0.5, 1.0, 2.0)


def recall_among_cold(scores: np.ndarray, cs, n_items: int) -> float:
    """Recall@K of (n_users, n_cold) scores over the cold round's held-out users."""
    from recsys.evaluation.metrics import per_user_metrics

    full = np.full((scores.shape[0], n_items), -np.inf, dtype=np.float64)
    full[:, cs.items] = scores
    top = np.argsort(-full, axis=1, kind="stable")[:, : quality.K]
    relevant = cs.round.held.relevant
    return float(per_user_metrics(top, relevant, quality.K, ("recall",))["recall"].mean())


def run(name: str, args: argparse.Namespace) -> None:
    from recsys.config import EncoderConfig, SplitConfig
    from recsys.data import load_dataset
    from recsys.data.split import split_interactions
    from recsys.ranking.popularity import PopularityRecommender
    from recsys.ranking.prior import fit_text_prior

    ds = load_dataset(args.data_root / name)
    split = split_interactions(ds.interactions, SplitConfig(n_test=1, n_valid=1))
    features = quality.item_features(ds, args)
    cs = quality.cold_split(ds, split)
    towers, best_epoch, seconds = quality.train_towers(ds, cs.warm_train, cs.warm_valid, args)
    text = quality.text_source(towers, features, ds, cs.round.train, prior=0.0)  # plain cosine
    cosine = np.asarray(text.score(cs.round.held.queries))[:, cs.items]  # (n_users, n_cold)
    counts = np.asarray(cs.round.matrix.sum(axis=0)).ravel()  # warm counts; cold ones are 0
    popularity = PopularityRecommender.fit(cs.round.matrix)
    pop = quality.evaluate(popularity, cs.round, cs.allowed)["recall"].mean()
    bounds = quality.cold_bounds(cs, ds.n_items)
    temperature = EncoderConfig(**dict(args.encoder_set)).temperature
    print(
        f"\n{name}: {cs.items.size} cold items, {cosine.shape[0]} users; towers trained "
        f"{seconds:.0f} s (best epoch {best_epoch})"
    )
    print(f"  {'order of the cold items':62s} Recall@{quality.K}  vs id-order popularity")
    rows = [
        ("random (expected)", bounds["random order"]),
        ("popularity: ties by item_idx (id order)", pop),
        ("towers alone", recall_among_cold(cosine, cs, ds.n_items)),
    ]
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    vectors = {"MiniLM features": unit, "tower item vectors": text.item_vectors}
    for label, x in vectors.items():
        prior = fit_text_prior(x, counts).predict(x[cs.items])  # (n_cold,) centred
        alone = recall_among_cold(np.broadcast_to(prior, cosine.shape), cs, ds.n_items)
        rows.append((f"prior alone ({label})", alone))
        for beta in BETAS:
            mark = " (fixed in advance)" if beta == 1.0 else ""
            scores = cosine / temperature + beta * prior[None, :]
            label_beta = f"towers + {beta:g} x prior ({label}){mark}"
            rows.append((label_beta, recall_among_cold(scores, cs, ds.n_items)))
    rows.append(("oracle: by held-out counts", bounds["oracle (held-out counts)"]))
    for label, recall in rows:
        print(f"  {label:62s} {recall:9.4f}  {recall / pop:5.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    parser.add_argument("--data-root", type=Path, default=quality.DATA_ROOT)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder-minutes", type=float, default=15.0, help="cap per tower run")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recsys-bench",
    )
    args = parser.parse_args(argv)
    args.encoder_set = []
    import torch

    torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())
    start = time.perf_counter()
    for name in args.datasets:
        run(name, args)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
