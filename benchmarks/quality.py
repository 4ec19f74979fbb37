"""Benchmark: offline quality on MovieLens — popularity, LightFM, ALS, zero-shot MiniLM, our text
towers and the blend, with a paired test of the blend against the best peer, plus cold items.

Protocol (every method alike): leave-last-one-out per user by timestamp (test), the interaction
before it is validation; every interaction is a positive; all items ranked, the user's training
items excluded; Recall@10 / NDCG@10 over users with >= 2 interactions. Hyper-parameters (LightFM
and ALS grids, tower early stopping, blend weights) are chosen on validation with models fitted
on train. For the test figures every model sees the train + valid interactions: popularity is
recounted and LightFM/ALS are refitted with the chosen settings (their user factors are learned);
the towers and MiniLM, whose users are encoded from their history at query time, encode the
train + valid history with the towers trained on train (no retraining).
Cold items: 10% of the items (seeded) lose all their interactions; models are fitted on the rest
and each user's interactions with the cold items are ranked among the cold items only.

    python benchmarks/quality.py [--datasets ml-latest-small ml-100k] [--encoder-minutes 8]
                                 [--no-cold] [--quick] [--cache DIR] [--encoder-set KEY=VALUE]
    python benchmarks/quality.py --datasets ml-latest-small --bundles BUNDLE_A BUNDLE_B

The towers train with the product's EncoderConfig defaults (what `recsys nightly` trains) unless
--encoder-set overrides a field, early-stopped on validation NDCG@10.

With --bundles, published bundles (e.g. from `recsys nightly` on the same data) are scored on the
same test round instead, through their ranker directly (by item_idx, not the serving path), with
the same metrics kernel: a cross-check of `recsys evaluate`'s report on those bundles.

The towers are the slow part: each training run stops at --encoder-minutes of wall time (four
runs in all: main + cold items per set), so on a busy CPU they see fewer epochs; the printed
"towers: best epoch" says how far they got. MiniLM features are cached under --cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from common import machine

DATA_ROOT = Path("/work/shared/datasets")
K = 10
LIGHTFM_GRID = [
    {"factors": f, "epochs": e, "learning_rate": lr}
    for f in (32, 64, 128)
    for e in (10, 30)
    for lr in (0.05,)
] + [{"factors": 64, "epochs": 30, "learning_rate": 0.025}]
ALS_GRID = [
    {"factors": f, "regularization": r, "alpha": a}
    for f in (32, 64, 128)
    for r in (0.01, 0.1)
    for a in (1.0, 10.0)
]


@dataclass
class Round:
    """One fit/evaluate round: models see `train`, are scored on `target` (one item per user)."""

    name: str
    train: pl.DataFrame
    target: pl.DataFrame
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        from recsys.pipeline import fit

        self.matrix = fit.matrix(self.train, self.n_users, self.n_items)  # binary
        self.lengths = np.diff(self.matrix.indptr)  # (n_users,) distinct train items
        self.held = fit.eval_set([self.train], self.target, self.n_users)


def evaluate(rec, rnd: Round, allowed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-user NDCG@K and Recall@K of a recommender on a round (one metrics kernel for all)."""
    from recsys.evaluation.metrics import per_user_metrics

    ranked, _ = rec.recommend(rnd.held.queries, K, rnd.held.exclude, allowed)
    return per_user_metrics(ranked, rnd.held.relevant, K, ("ndcg", "recall"))


def tune_collab(valid: Round, model: str, grid: list[dict], threads: int):
    """The grid point with the best validation NDCG: (config, its fitted recommender, NDCG)."""
    from recsys.config import CollabConfig
    from recsys.ranking.collab import CollabRecommender

    best = (None, None, -1.0)
    for point in grid:
        config = CollabConfig(model=model, threads=threads, fits=1, **point)
        rec = CollabRecommender.fit(valid.matrix, config)
        ndcg = evaluate(rec, valid)["ndcg"].mean()
        print(f"    {model} {point}: valid NDCG@{K} {ndcg:.4f}", flush=True)
        if ndcg > best[2]:
            best = (config, rec, ndcg)
    return best


def item_features(dataset, args) -> np.ndarray:
    """(n_items, hidden) frozen mean-pooled MiniLM features of the item documents, cached."""
    from recsys.config import EncoderConfig, TextConfig
    from recsys.encoder.features import Featurizer
    from recsys.text.documents import item_documents

    docs = item_documents(dataset, TextConfig())
    args.cache.mkdir(parents=True, exist_ok=True)
    return Featurizer.for_encoder(EncoderConfig(), "cpu", cache_dir=args.cache)(docs)


def train_towers(dataset, train: pl.DataFrame, valid: pl.DataFrame, args):
    """Our two towers on the CPU frozen path, early-stopped on `valid` NDCG@10.
    Returns (encoder, best epoch, seconds)."""
    import tempfile

    from recsys.config import EncoderConfig, TextConfig
    from recsys.data.split import Split
    from recsys.training.train import train_encoder

    config = EncoderConfig(
        path="frozen",
        device="cpu",
        max_minutes=args.encoder_minutes,
        **dict(args.encoder_set),
    )
    split = Split(train=train, valid=valid, test=valid.clear())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="towers-") as out:
        trained = train_encoder(
            dataset, split, config, TextConfig(), Path(out), progress=False, cache_dir=args.cache
        )
    return trained.encoder, trained.best_epoch, time.perf_counter() - start


def text_source(
    encoder, features: np.ndarray, dataset, history: pl.DataFrame, prior: float | None = None
):
    """ContentRecommender over the trained towers, built by the nightly's own functions
    (recsys.pipeline.fit): item tower on the cached features, every user encoded once from
    `history` (+ profile text) as the known-user vectors, and the text popularity prior on items
    `history` never mentions (weight `prior`, default BlendConfig's cold_prior; 0 = off)."""
    from recsys.config import BlendConfig
    from recsys.pipeline import fit
    from recsys.text.documents import profile_texts

    items = encoder.with_id_vectors(
        encoder.item_vectors_from_features(features), dataset.item_map.ids
    )  # (n, dim)
    weight = BlendConfig().cold_prior if prior is None else prior
    bias = fit.cold_prior(features, history, encoder.config, weight)
    source = fit.text_source(encoder, items, bias=bias)
    per_user = fit.histories(history, dataset.n_users)
    source.set_known_users(*fit.known_user_vectors(source, per_user, profile_texts(dataset)))
    return source


@dataclass
class Selected:
    """What validation chose: collab settings, the towers (trained on train), blend weights."""

    lightfm: Any  # CollabConfig
    als: Any  # CollabConfig
    collab: Any  # the better of the two on validation, the blend's collab source
    towers: Any  # TwoTowerEncoder
    weights: Any  # SegmentWeights


def select_on_valid(ds, split, valid: Round, features: np.ndarray, args) -> Selected:
    """Grids for LightFM and ALS, tower early stopping and blend weights, all on validation."""
    from recsys.config import BlendConfig
    from recsys.ranking.popularity import PopularityRecommender
    from recsys.training.blend_weights import learn_weights

    lightfm_grid = LIGHTFM_GRID[-1:] if args.quick else LIGHTFM_GRID
    als_grid = ALS_GRID[:1] if args.quick else ALS_GRID
    lfm_cfg, lfm_rec, lfm_ndcg = tune_collab(valid, "lightfm", lightfm_grid, args.threads)
    als_cfg, als_rec, als_ndcg = tune_collab(valid, "als", als_grid, args.threads)
    collab_cfg, collab_rec = (lfm_cfg, lfm_rec) if lfm_ndcg >= als_ndcg else (als_cfg, als_rec)
    towers, best_epoch, seconds = train_towers(ds, split.train, split.valid, args)
    print(f"  towers: best epoch {best_epoch}, {seconds:.0f} s", flush=True)
    sources = {
        "text": text_source(towers, features, ds, split.train),
        "collab": collab_rec,
        "popularity": PopularityRecommender.fit(valid.matrix),
    }
    held = valid.held
    weights = learn_weights(
        sources, held.queries, held.relevant, held.exclude, BlendConfig(sources=list(sources)), K,
        user_history_len=valid.lengths,
    )  # fmt: skip
    print(f"  blend weights (collab = {collab_cfg.model}): all {weights.default}", flush=True)
    for segment, chosen in weights.stats["chosen"].items():
        print(f"    segment {segment}: {chosen} {weights.for_segment(segment)}")
    return Selected(lfm_cfg, als_cfg, collab_cfg, towers, weights)


def test_methods(ds, test: Round, train_valid, features: np.ndarray, sel: Selected) -> dict:
    """Every method for the test round. LightFM, ALS and popularity are refitted on train +
    valid with the chosen settings; the towers and MiniLM encode each user's train + valid
    history (their users are inductive)."""
    from recsys.config import BlendConfig
    from recsys.ranking.blend import BlendedRanker
    from recsys.ranking.collab import CollabRecommender
    from recsys.ranking.content import ContentRecommender
    from recsys.ranking.popularity import PopularityRecommender
    from recsys.ranking.user_vectors import HistoryMeanEncoder

    methods = {
        "popularity": PopularityRecommender.fit(test.matrix),
        "LightFM (WARP)": CollabRecommender.fit(test.matrix, sel.lightfm),
        "ALS": CollabRecommender.fit(test.matrix, sel.als),
        "MiniLM zero-shot": ContentRecommender(features, HistoryMeanEncoder(20)),
        "text towers": text_source(sel.towers, features, ds, train_valid),
    }
    no_prior = text_source(sel.towers, features, ds, train_valid, prior=0.0)
    collab = methods["LightFM (WARP)" if sel.collab.model == "lightfm" else "ALS"]
    for suffix, text in (("", methods["text towers"]), (NO_PRIOR, no_prior)):
        sources = {"text": text, "collab": collab, "popularity": methods["popularity"]}
        methods["blend" + suffix] = BlendedRanker(
            sources, sel.weights, BlendConfig(sources=list(sources)), test.lengths
        )
    methods["text towers" + NO_PRIOR] = no_prior
    return methods


def run_dataset(name: str, args: argparse.Namespace) -> None:
    from recsys.config import SplitConfig
    from recsys.data import load_dataset
    from recsys.data.split import ORDER, split_interactions

    print(f"\n=== {name} ===", flush=True)
    t0 = time.perf_counter()
    ds = load_dataset(args.data_root / name)
    split = split_interactions(ds.interactions, SplitConfig(n_test=1, n_valid=1))
    train_valid = pl.concat([split.train, split.valid]).sort(ORDER)
    valid = Round("valid", split.train, split.valid, ds.n_users, ds.n_items)
    test = Round("test", train_valid, split.test, ds.n_users, ds.n_items)
    features = item_features(ds, args)
    print(f"  data + item features {time.perf_counter() - t0:.0f} s", flush=True)
    selected = select_on_valid(ds, split, valid, features, args)
    methods = test_methods(ds, test, train_valid, features, selected)
    results = {method: evaluate(rec, test) for method, rec in methods.items()}
    print_table(f"{name} test", list(results.items()), len(test.held.user_idx), ds.n_items)
    compare_with_best_peer(results)
    if not args.no_cold:
        cold_items(ds, split, features, selected.collab, selected.weights, args)
    print(f"  {name} wall time {time.perf_counter() - t0:.0f} s", flush=True)


NO_PRIOR = ", no popularity prior"  # cold_prior = 0: the text prior of never-interacted items off
OURS = ("text towers", "blend", "text towers" + NO_PRIOR, "blend" + NO_PRIOR)


def evaluate_bundles(paths: Sequence[Path], args: argparse.Namespace) -> None:
    """Each bundle's Recall/NDCG@10 on the first dataset's test round, and a paired test."""
    from recsys.config import SplitConfig
    from recsys.data import load_dataset
    from recsys.data.split import ORDER, split_interactions
    from recsys.evaluation.stats import paired_tests
    from recsys.ranking.model import RecommenderModel

    name = args.datasets[0]
    ds = load_dataset(args.data_root / name)
    split = split_interactions(ds.interactions, SplitConfig(n_test=1, n_valid=1))
    train_valid = pl.concat([split.train, split.valid]).sort(ORDER)
    test = Round("test", train_valid, split.test, ds.n_users, ds.n_items)
    results = {}
    for path in paths:
        model = RecommenderModel.load(path, evaluated=True)  # the split-fitted ranker
        if model.item_map.ids != ds.item_map.ids or model.users.ids != ds.user_map.ids:
            raise SystemExit(f"{path}: its item/user ids differ from {name}'s; not comparable")
        results[f"{model.version} {'+'.join(model.ranker.names)}"] = evaluate(model.ranker, test)
    print_table(f"{name} test, bundles", list(results.items()), len(test.held.user_idx), ds.n_items)
    (name_a, a), (name_b, b) = list(results.items())[:2]
    tests = paired_tests(a["ndcg"], b["ndcg"])
    print(
        f"  B / A NDCG@{K}: {b['ndcg'].mean():.4f} / {a['ndcg'].mean():.4f} = "
        f"{b['ndcg'].mean() / a['ndcg'].mean():.3f}x; paired t-test p = {tests['ttest']:.2g}"
    )


def compare_with_best_peer(results: dict[str, dict[str, np.ndarray]]) -> None:
    """Paired tests of the blend against the best peer system (popularity, LightFM, ALS,
    zero-shot MiniLM) and against our own text towers alone."""
    from recsys.evaluation.stats import paired_tests

    peers = {m: r for m, r in results.items() if m not in OURS}
    best = max(peers, key=lambda m: peers[m]["ndcg"].mean())
    pairs = (
        ("best peer", best),
        ("our text towers alone", "text towers"),
        ("itself without the prior", "blend" + NO_PRIOR),
    )
    for label, name in pairs:
        a, b = results[name]["ndcg"], results["blend"]["ndcg"]
        tests = paired_tests(a, b)
        print(
            f"  blend vs {label} ({name}): NDCG@{K} {b.mean():.4f} / {a.mean():.4f} = "
            f"{b.mean() / a.mean():.3f}x; paired t-test p = {tests['ttest']:.2g}, "
            f"Wilcoxon p = {tests['wilcoxon']:.2g}"
        )


@dataclass
class ColdSplit:
    """10 % of the items (seeded) with every interaction removed from training."""

    items: np.ndarray  # (n_cold,) item_idx, sorted
    allowed: np.ndarray  # (n_items,) bool: the cold items
    warm_train: pl.DataFrame
    warm_valid: pl.DataFrame
    round: Round  # fitted on warm train + valid; targets = every cold interaction


def cold_split(ds, split) -> ColdSplit:
    """The cold-item round: users keep only their warm history; those with none are dropped."""
    from recsys.data.split import ORDER
    from recsys.schema import ITEM_IDX

    rng = np.random.default_rng(0)
    seen = np.unique(ds.interactions[ITEM_IDX].to_numpy())
    cold = np.sort(rng.choice(seen, size=max(1, round(0.1 * seen.size)), replace=False))
    allowed = np.zeros(ds.n_items, dtype=bool)
    allowed[cold] = True
    warm_train, warm_valid = (
        f.filter(~pl.col(ITEM_IDX).is_in(cold)) for f in (split.train, split.valid)
    )
    warm = pl.concat([warm_train, warm_valid]).sort(ORDER)
    target = ds.interactions.filter(pl.col(ITEM_IDX).is_in(cold))
    rnd = Round("cold", warm, target, ds.n_users, ds.n_items)
    keep = [i for i, q in enumerate(rnd.held.queries) if q.history.size]  # warm history needed
    rnd.held = type(rnd.held)(
        rnd.held.user_idx[keep], *([getattr(rnd.held, f)[i] for i in keep]
                                   for f in ("queries", "relevant", "exclude"))
    )  # fmt: skip
    return ColdSplit(cold, allowed, warm_train, warm_valid, rnd)


def cold_bounds(cs: ColdSplit, n_items: int) -> dict[str, float]:
    """Model-free Recall@K references on the cold round: a random order (expected), the cold
    items ordered by their held-out counts (an oracle: no model has them), and the Spearman
    correlation of a lower item_idx with more held-out interactions (what id order knows)."""
    from scipy import sparse as sp
    from scipy import stats

    from recsys.ranking.popularity import PopularityRecommender

    held = cs.round.held
    n_rel = np.array([np.unique(r).size for r in held.relevant], dtype=np.float64)
    size = cs.items.size
    random_recall = float(np.mean(min(K, size) * n_rel / size / np.minimum(n_rel, K)))
    rows = np.repeat(np.arange(len(held.relevant)), [len(r) for r in held.relevant])
    matrix = sp.csr_matrix(
        (np.ones(rows.size), (rows, np.concatenate(held.relevant))), (len(held.relevant), n_items)
    )
    oracle = PopularityRecommender.fit(matrix)
    recall = evaluate(oracle, cs.round, cs.allowed)["recall"].mean()
    rho = stats.spearmanr(-cs.items, oracle.popularity[cs.items]).statistic
    return {
        "random order": random_recall,
        "oracle (held-out counts)": float(recall),
        "spearman(-id, held-out count)": float(rho),
    }


def cold_items(ds, split, features, collab_cfg, weights, args) -> None:
    """10% of the items (seeded) lose every interaction; rank each user's cold items among the
    cold items only. Every model is refitted without them (the towers on warm train, early
    stopped on warm valid); users are represented by their warm train + valid history."""
    from recsys.config import BlendConfig
    from recsys.ranking.blend import BlendedRanker
    from recsys.ranking.collab import CollabRecommender
    from recsys.ranking.content import ContentRecommender
    from recsys.ranking.popularity import PopularityRecommender
    from recsys.ranking.user_vectors import HistoryMeanEncoder

    cs = cold_split(ds, split)
    rnd, allowed, cold = cs.round, cs.allowed, cs.items
    towers, _, _ = train_towers(ds, cs.warm_train, cs.warm_valid, args)
    text = text_source(towers, features, ds, rnd.train)  # warm train + valid
    no_prior = text_source(towers, features, ds, rnd.train, prior=0.0)  # cold_prior = 0
    popularity = PopularityRecommender.fit(rnd.matrix)
    collab = CollabRecommender.fit(rnd.matrix, collab_cfg)
    methods = {
        "popularity": popularity,
        f"{collab_cfg.model} (collab)": collab,
        "MiniLM zero-shot": ContentRecommender(features, HistoryMeanEncoder(20)),
        "text towers" + NO_PRIOR: no_prior,
        "text towers": text,
        "blend": BlendedRanker(
            {"text": text, "collab": collab, "popularity": popularity},
            weights, BlendConfig(sources=["text", "collab", "popularity"]), rnd.lengths,
        ),
    }  # fmt: skip
    results = {m: evaluate(rec, rnd, allowed) for m, rec in methods.items()}
    title = f"cold items ({cold.size} items held out, ranked among themselves)"
    print_table(title, list(results.items()), len(rnd.held.relevant), cold.size)
    bounds = cold_bounds(cs, ds.n_items)
    random_recall = bounds["random order"]
    print(f"  a random order of the cold items: expected Recall@{K} {random_recall:.4f}")
    pop = results["popularity"]["recall"].mean()
    for m in ("MiniLM zero-shot", "text towers" + NO_PRIOR, "text towers", "blend"):
        r = results[m]["recall"].mean()
        print(f"  {m}: Recall@{K} {r / pop:.2f}x popularity, {r / random_recall:.2f}x random order")
    print("  (popularity ranks cold items, all at count 0, by item_idx: the catalog's id order)")
    oracle = bounds["oracle (held-out counts)"]
    print(
        f"  oracle bound, cold items ordered by their held-out counts (no model has them): "
        f"Recall@{K} {oracle:.4f} = {oracle / pop:.2f}x popularity"
    )


def print_table(title: str, rows: Sequence[tuple[str, dict]], n_users: int, n_items: int) -> None:
    print(f"\n{title}: {n_users} users evaluated, {n_items} items")
    width = max(26, *(len(name) + 1 for name, _ in rows))
    print(f"  {'method':<{width}}{'Recall@10':>10}{'NDCG@10':>10}")
    for name, metrics in rows:
        print(f"  {name:<{width}}{metrics['recall'].mean():>10.4f}{metrics['ndcg'].mean():>10.4f}")


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-latest-small", "ml-100k"])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recsys-bench",
        help="frozen MiniLM features of the item documents (reruns skip the embedding)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder-minutes", type=float, default=8.0, help="cap per tower run")
    parser.add_argument("--quick", action="store_true", help="one grid point per model")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-item evaluation")
    parser.add_argument(
        "--encoder-set",
        metavar="KEY=VALUE",
        action="append",
        type=key_value,
        default=[],
        help="override an EncoderConfig field for the towers (repeatable), e.g. history_len=200",
    )
    parser.add_argument(
        "--bundles", type=Path, nargs=2, default=None, help="score two bundles A B instead"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # numpy's OpenBLAS too: its idle workers spin on the cores
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine())
    start = time.perf_counter()
    if args.bundles:
        evaluate_bundles(args.bundles, args)
    for name in [] if args.bundles else args.datasets:
        run_dataset(name, args)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
