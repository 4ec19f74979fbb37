"""Benchmark: the quality of the published bundle measured from the outside, beside peers fitted
on exactly the same data. Reads MovieLens directories; writes only under a temp dir (or --keep)
and the optional --json-out file.

Per dataset variant: each user's newest interaction (timestamp, ties by file order) is held out
before the product sees anything; the rest (REST) is written as a contract data directory; the
real `recsys nightly --data REST --workdir FRESH` runs as a subprocess (default config unless
--config), then `recsys recommend --all --k 10`; the file is scored with the shared protocol
(../shared/datasets/README.md: every item ranked, the user's REST items excluded, NDCG@10 and
Recall@10 over users with >= 2 interactions). Peers (benchmarks/peers.py): popularity, LightFM
and ALS tuned on a validation split of REST, SASRec-CE (benchmarks/sasrec.py), over --seeds.
Paired t-test and Wilcoxon of the bundle against each peer on per-user NDCG@10 (a peer's per-user
values averaged over its seeds).

    python benchmarks/published_quality.py [--datasets ml-100k ml-100k-sparse8 ...]
        [--seeds 0 1 2] [--product-runs 1] [--threads 1] [--config FILE] [--keep DIR]
        [--json-out FILE] [--quick] [--products LABEL[:RECSYS_X=V,...] ...] [--peer-cache DIR]
        [--vary-seeds] [--lists-from DIR]

The nightly is bit-for-bit repeatable only where each LightFM fit gets one thread ([collab]
threads = 0 shares the cores among the `fits` fits; with more cores than fits they race, Hogwild):
--product-runs N runs it N times on fresh work directories, reports mean ± sd, and tests on each
user's NDCG@10 averaged over runs. On 2 cores with --threads 1 two runs gave the same lists.
--vary-seeds gives run r the encoder seed 42 + r and the collaborative seeds 42 + 10 r (run 0:
the defaults; a --products setting naming a seed keeps it): the product's figure then averages
over its own seeds, as each seeded peer's does over --seeds, instead of resting on one draw.

--products runs several product settings (RECSYS_* config overrides for the nightly, e.g.
'no refit:RECSYS_NIGHTLY__REFIT=false') beside the same peers, each with its own tables, and
compares each with the first: per-user NDCG@10 paired tests and the nightly wall-time ratio.

--lists-from DIR scores the lists an earlier `--keep DIR` run left instead of running the nightly
again (the same variants, settings and runs; the REST is checked, the settings are not): to pair a
kept run with peers trained later.

--peer-cache DIR: SASRec-CE's top-10 lists trained on another machine (a GPU's: minutes instead of
hours per seed on dense ml-latest-small) by benchmarks/peer_cache.py from the same rounds; a file
made from other rounds, or lacking a seed, is ignored and SASRec is trained here.

Variants: ml-100k, ml-latest-small, and NAME-sparse8 (each user's newest 8 interactions).
--quick: the first 200 users of each variant, a 1-minute encoder budget for the nightly (unless
--config), one grid point per collaborative model, SASRec 3 epochs, the first seed only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "datasets"
if not DATA_ROOT.is_dir():
    DATA_ROOT = Path("/work/shared/datasets")
VARIANTS = ["ml-100k-sparse8", "ml-latest-small-sparse8", "ml-100k", "ml-latest-small"]
BUNDLE = "published bundle"
THREAD_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "POLARS_MAX_THREADS", "RAYON_NUM_THREADS",
)  # fmt: skip
QUICK_CONFIG = "[encoder]\nepochs = 2\nmax_minutes = 1.0\n"
QUICK_USERS = 200


def say(message: str) -> None:
    print(message, flush=True)


def run_product(variant, work: Path, args: argparse.Namespace, setting: dict[str, str]) -> dict:
    """Contract dir -> `recsys nightly` -> `recsys recommend --all`; wall times and the file.
    `setting`: RECSYS_* variables for the nightly (a product configuration beside the default)."""
    from outside_in import write_contract_dir

    if args.lists_from is not None:  # an earlier --keep run's lists: no nightly here
        return kept_product(variant, args.lists_from / variant.name / work.parent.name / work.name)
    data, workdir, recs = work / "data", work / "workdir", work / "recommendations.csv"
    write_contract_dir(variant, data)
    config = ["--config", str(args.config)] if args.config else []
    recsys = str(Path(sys.executable).with_name("recsys"))
    env = dict(os.environ, RECSYS_MLFLOW_DIR=str(work / "mlflow"), HF_HUB_OFFLINE="1", **setting)
    times = {}
    for step, argv in (
        ("nightly", ["nightly", "--data", str(data)]),
        ("recommend", ["recommend", "--all", "--k", "10", "--out", str(recs)]),
    ):
        command = [recsys, *argv, "--workdir", str(workdir), *config]
        say(f"  $ {' '.join(command)}")
        log = work / f"{step}.log"
        start = time.perf_counter()
        with log.open("w") as out:
            done = subprocess.run(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        times[step] = time.perf_counter() - start
        lines = log.read_text(errors="replace").splitlines()
        if done.returncode != 0:
            raise SystemExit(
                f"{step} failed ({done.returncode}); the end of {log}:\n" + "\n".join(lines[-30:])
            )
        tail = [line for line in lines if line.strip()][-3:]
        say(f"  {step}: {times[step]:.0f} s; " + " | ".join(tail))
    return {
        "nightly_seconds": times["nightly"],
        "recommend_seconds": times["recommend"],
        **product_facts(workdir, work / "nightly.log"),
        "file": recs,
    }


def kept_product(variant, kept: Path) -> dict:
    """A product run an earlier `--keep` left under `kept` (its data directory, work directory,
    nightly log and `recommend --all` file), scored again: SystemExit unless its data directory
    holds this variant's REST exactly (check_contract_dir). Its wall times are not known here."""
    from outside_in import check_contract_dir

    recs = kept / "recommendations.csv"
    if not recs.is_file():
        raise SystemExit(f"--lists-from: expected {recs} (an earlier --keep run), found none")
    check_contract_dir(variant, kept / "data")
    facts = product_facts(kept / "workdir", kept / "nightly.log")
    unknown = {"nightly_seconds": float("nan"), "recommend_seconds": float("nan")}
    return {**unknown, **facts, "file": recs}


def product_facts(workdir: Path, log: Path) -> dict:
    """What the published bundle says of itself (its manifest and blend weights) and how the
    encoder training went (the nightly's log): the inside view beside the outside figures."""
    bundle = (workdir / "CURRENT").read_text().strip()
    bundle = Path(bundle) if Path(bundle).is_absolute() else workdir / "bundles" / bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = json.loads((bundle / "ranker" / "weights.json").read_text())
    steps = {}  # the run's step manifests: seconds per step, the encoder's result
    for path in sorted((workdir / "runs" / manifest["run_key"] / "steps").glob("*.json")):
        record = json.loads(path.read_text())
        steps[record["step"]] = record
    encoder = steps.get("encoder", {}).get("result", {})
    best = encoder.get("best_epoch")
    return {
        "bundle": manifest["version"],
        "internal_metrics": manifest["metrics"],  # the candidate on the nightly's own split
        "blend_weights": {"default": weights["default"], "per_segment": weights["per_segment"]},
        "collab": manifest.get("fit", {}).get("collab", {}).get("model"),
        "step_seconds": {name: round(r["seconds"], 1) for name, r in steps.items()},
        "encoder_best_epoch": None if best is None else int(best) + 1,  # 1-based
        "encoder_stopped_at_max_minutes": "stopped at max_minutes" in log.read_text(),
    }


def summarize(per_seed: list[dict], users: np.ndarray | None = None) -> dict:
    """Mean and sd over seeds of the per-user means (restricted to the `users` mask)."""
    out = {}
    for name in ("ndcg", "recall"):
        means = np.array(
            [m[name][users].mean() if users is not None else m[name].mean() for m in per_seed]
        )
        out[name] = float(means.mean())
        out[f"{name}_sd"] = float(means.std(ddof=1)) if means.size > 1 else 0.0
        out[f"{name}_per_seed"] = [round(float(v), 5) for v in means]
    return out


def compare(results: dict[str, list[dict]], users: np.ndarray | None) -> dict[str, dict]:
    """Per method: summary, ratio to the best peer, paired tests of the bundle against it."""
    from recsys.evaluation.stats import paired_tests

    mask = slice(None) if users is None else users
    table = {method: summarize(runs, users) for method, runs in results.items()}
    peers = [m for m in results if m != BUNDLE]
    best = max(peers, key=lambda m: table[m]["ndcg"])
    bundle = np.mean([m["ndcg"][mask] for m in results[BUNDLE]], axis=0)  # (n_users,) over runs
    for method in results:
        row = table[method]
        row["n_users"] = int(results[method][0]["ndcg"][mask].size)
        row["ratio_to_best_peer"] = row["ndcg"] / table[best]["ndcg"]
        row["best_peer"] = best
        if method != BUNDLE:
            peer = np.mean([m["ndcg"][mask] for m in results[method]], axis=0)  # (n_users,)
            tests = paired_tests(peer, bundle)
            row["bundle_ratio"] = float(bundle.mean() / peer.mean())
            row["ttest_p"], row["wilcoxon_p"] = tests["ttest"], tests["wilcoxon"]
    return table


def print_table(title: str, table: dict[str, dict]) -> None:
    say(f"\n{title}")
    head = f"  {'method':<18}{'NDCG@10':>18}{'Recall@10':>18}{'/best peer':>11}"
    say(head + f"{'bundle/it':>10}{'t-test p':>10}{'Wilcoxon p':>11}")
    for method, row in table.items():
        cells = [f"  {method:<18}"]
        for name in ("ndcg", "recall"):
            sd = f" ± {row[f'{name}_sd']:.4f}" if len(row[f"{name}_per_seed"]) > 1 else ""
            cells.append(f"{row[name]:.4f}{sd}".rjust(18))
        cells.append(f"{row['ratio_to_best_peer']:>11.3f}")
        if "ttest_p" in row:
            cells.append(
                f"{row['bundle_ratio']:>10.3f}{row['ttest_p']:>10.2g}{row['wilcoxon_p']:>11.2g}"
            )
        say("".join(cells))
    say(
        f"  best peer: {next(iter(table.values()))['best_peer']}; "
        f"seeds: {len(table['ALS']['ndcg_per_seed'])} per seeded peer, "
        f"{len(table[BUNDLE]['ndcg_per_seed'])} nightly run(s)"
    )


def run_products(
    variant, held, work: Path, args: argparse.Namespace, setting: dict[str, str]
) -> tuple[list, list]:
    """--product-runs nightlies, each on a fresh work directory: (metrics, facts) per run."""
    from outside_in import read_recommendations, seen_in_lists
    from peers import K, metrics

    runs, facts = [], []
    for run in range(args.product_runs):
        product = run_product(variant, work / f"product-{run}", args, seeded(setting, run, args))
        ranked = read_recommendations(product.pop("file"), variant, held.user_idx, K)
        product["rest_items_in_lists"] = seen_in_lists(ranked, held.exclude)
        runs.append(metrics(ranked, held))
        facts.append(product)
        say(
            f"  nightly run {run + 1}: {product['nightly_seconds']:.0f} s (encoder: best epoch "
            f"{product['encoder_best_epoch']}, stopped at max_minutes: "
            f"{product['encoder_stopped_at_max_minutes']}; collab {product['collab']}; steps "
            f"{product['step_seconds']}); recommend "
            f"{product['recommend_seconds']:.0f} s; blend weights {product['blend_weights']}; "
            f"the nightly's own NDCG@10 (internal split) "
            f"{product['internal_metrics'].get('ndcg', float('nan')):.4f}; outside-in NDCG@10 "
            f"{runs[-1]['ndcg'].mean():.4f}; REST items in its lists: "
            f"{product['rest_items_in_lists']}"
        )
    return runs, facts


def seeded(setting: dict[str, str], run: int, args: argparse.Namespace) -> dict[str, str]:
    """The setting of nightly run `run`: with --vary-seeds, run r > 0 gets its own encoder and
    collaborative seeds (42 + r, 42 + 10 r: LightFM's fits take seed, seed + 1, ...) unless the
    setting names them."""
    if not args.vary_seeds or run == 0:
        return setting
    seeds = {"RECSYS_ENCODER__SEED": str(42 + run), "RECSYS_COLLAB__SEED": str(42 + 10 * run)}
    return {**seeds, **setting}


def run_variant(name: str, work: Path, args: argparse.Namespace) -> dict:
    from outside_in import load_variant
    from peers import run_peers

    say(f"\n=== {name} ===")
    variant = load_variant(args.data_root, name, QUICK_USERS if args.quick else None)
    held = variant.test_round()
    say(
        f"  {variant.dataset.n_items} items, {held.user_idx.size} held-out users, "
        f"REST {variant.rest.height} interactions; test items tied with the user's previous "
        f"interaction: {variant.tied.mean():.1%}"
    )
    products = {}
    for label, setting in args.products.items():
        say(
            f"  product {label!r}: {' '.join(f'{k}={v}' for k, v in setting.items()) or 'defaults'}"
        )
        products[label] = run_products(variant, held, work / _slug(label), args, setting)
    peer_results, chosen = run_peers(
        variant, args.seeds, args.threads, args.quick, say, not args.no_sasrec, args.peer_cache
    )
    out = {
        "users": int(held.user_idx.size),
        "items": variant.dataset.n_items,
        "rest_interactions": variant.rest.height,
        "tied_test_share": float(variant.tied.mean()),
        "chosen": chosen,
        "products": {},
    }
    for label, (runs, facts) in products.items():
        results = {BUNDLE: runs, **peer_results}
        row = {
            "setting": args.products[label],
            "nightly_seconds": [f["nightly_seconds"] for f in facts],
            "nightly_runs": facts,
            "all": compare(results, None),
        }
        print_table(f"{name} [{label}]: all {held.user_idx.size} held-out users", row["all"])
        if variant.tied.any():
            row["untied"] = compare(results, ~variant.tied)
            print_table(
                f"{name} [{label}]: without tied test items ({(~variant.tied).sum()} users)",
                row["untied"],
            )
        out["products"][label] = row
    if len(products) > 1:
        out["between_products"] = between_products(products)
    return out


def between_products(products: dict[str, tuple[list, list]]) -> dict[str, dict]:
    """Each product configuration against the first (paired tests on per-user NDCG@10 averaged
    over its runs) and nightly wall times: what a setting such as refit buys and costs."""
    from recsys.evaluation.stats import paired_tests

    labels = list(products)
    per_user = {k: np.mean([m["ndcg"] for m in runs], axis=0) for k, (runs, _) in products.items()}
    seconds = {k: float(np.mean([f["nightly_seconds"] for f in facts])) for k, (_, facts) in
               products.items()}  # fmt: skip
    base = labels[0]
    out = {}
    say(f"\n  product settings against {base!r} (NDCG@10 per user, averaged over runs):")
    for label in labels:
        row = {"ndcg": float(per_user[label].mean()), "nightly_seconds": seconds[label]}
        if label != base:
            tests = paired_tests(per_user[base], per_user[label])
            row.update(
                ratio=float(row["ndcg"] / per_user[base].mean()),
                time_ratio=seconds[label] / seconds[base],
                ttest_p=tests["ttest"],
                wilcoxon_p=tests["wilcoxon"],
            )
        out[label] = row
        extra = (
            f"  x{row['ratio']:.3f}, t-test p {row['ttest_p']:.2g}, Wilcoxon p "
            f"{row['wilcoxon_p']:.2g}; nightly time x{row['time_ratio']:.2f}"
            if label != base
            else ""
        )
        say(f"    {label:<24} NDCG@10 {row['ndcg']:.4f}; nightly {seconds[label]:.0f} s{extra}")
    return out


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label)


def limit_threads(threads: int) -> None:
    """Cap BLAS/OpenMP/torch pools here and, through the environment, in the subprocesses."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def outside_repo(path: Path | None, flag: str) -> Path | None:
    """Nothing derived from MovieLens may be written inside the repository."""
    if path is not None and path.resolve().is_relative_to(REPO):
        raise SystemExit(f"{flag} {path}: inside the repository {REPO}; choose a path outside it")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=VARIANTS,
        default=None,
        help=f"default: all four ({', '.join(VARIANTS)}); --quick: the first",
    )
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--config", type=Path, help="config for the nightly (default: defaults)")
    parser.add_argument(
        "--product-runs", type=int, default=1, help="nightly runs per variant (fresh workdirs)"
    )
    parser.add_argument(
        "--products",
        nargs="+",
        default=["default"],
        help="product settings run side by side, beside the same peers: LABEL[:RECSYS_X=V,...] "
        "(e.g. 'no refit:RECSYS_NIGHTLY__REFIT=false'); the first is the reference",
    )
    parser.add_argument(
        "--vary-seeds",
        action="store_true",
        help="each nightly run after the first with its own encoder and collaborative seeds",
    )
    parser.add_argument("--keep", type=Path, help="keep data dirs and workdirs under this dir")
    parser.add_argument(
        "--lists-from",
        type=Path,
        help="score the product runs an earlier --keep DIR left (same --datasets, --products "
        "labels and --product-runs; its REST is checked) instead of running the nightly: e.g. "
        "beside SASRec-CE lists trained later (--peer-cache)",
    )
    parser.add_argument("--json-out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--quick", action="store_true", help="a few-minute end-to-end check")
    parser.add_argument(
        "--no-sasrec",
        action="store_true",
        help="leave SASRec-CE out of the peers (hours per seed on one thread on dense "
        "ml-latest-small); the tables then have no SASRec-CE row",
    )
    parser.add_argument(
        "--peer-cache",
        type=Path,
        help="SASRec-CE's lists trained elsewhere, e.g. on a GPU (benchmarks/peer_cache.py); "
        "used only where they were made from the same rounds, else SASRec is trained here",
    )
    args = parser.parse_args(argv)
    args.datasets = args.datasets or (VARIANTS[:1] if args.quick else VARIANTS)
    from common import parse_product

    args.products = dict(parse_product(p) for p in args.products)
    args.seeds = args.seeds[:1] if args.quick else args.seeds
    outside_repo(args.keep, "--keep")
    if args.lists_from is not None and args.keep is not None:
        if args.lists_from.resolve() == args.keep.resolve():
            parser.error("--lists-from and --keep name the same directory (--keep empties it)")
    outside_repo(args.json_out, "--json-out")
    if args.config is not None:
        args.config = args.config.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    from common import header

    header("published quality, outside-in")
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "datasets": {}}
    root = args.keep or Path(tempfile.mkdtemp(prefix="published-quality-"))
    start = time.perf_counter()
    if args.quick and args.config is None:
        args.config = root / "quick.toml"
        root.mkdir(parents=True, exist_ok=True)
        args.config.write_text(QUICK_CONFIG)
    try:
        for name in args.datasets:
            work = root / name
            if work.exists():
                shutil.rmtree(work)  # a fresh work directory every run
            work.mkdir(parents=True)
            report["datasets"][name] = run_variant(name, work, args)
            if args.json_out:  # after every variant: a long run keeps what it finished
                write_json(args.json_out, report)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    say(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


def write_json(path: Path, report: dict) -> None:
    from common import machine

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": machine()}, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
