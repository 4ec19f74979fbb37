"""Benchmark (pipeline): full nightly wall time, and an incremental night where 1 % of the items
changed text, in the same script.

    python benchmarks/nightly.py --data data/sample
    python benchmarks/nightly.py --data ../shared/datasets/ml-latest-small

The full run starts from an empty work directory (it trains the encoder). The incremental run
then sees the same interactions with 1 % of the items' titles changed: the encoder is not due,
so it is reused; only changed texts are re-embedded; the collaborative model is reused by hash.
MLflow tracking is on (a temporary sqlite store), as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl
from common import SHARED, header

from recsys.config import load_config
from recsys.data.loaders import read_tables
from recsys.pipeline.nightly import run_nightly


def changed_copy(data: Path, out: Path, fraction: float, seed: int = 0) -> int:
    """Copy a data directory as the contract layout with `fraction` of item titles changed."""
    tables = read_tables(data)
    items = tables.items.frame
    items = items.select([c for c in items.columns if not c.startswith("_")])
    n = round(items.height * fraction)
    chosen = items.sample(n, seed=seed)["item_id"]
    title = "title" if "title" in items.columns else items.columns[1]
    items = items.with_columns(
        pl.when(pl.col("item_id").is_in(chosen.implode()))
        .then(pl.col(title) + " (revised)")
        .otherwise(pl.col(title))
        .alias(title)
    )
    out.mkdir(parents=True)
    items.write_parquet(out / "items.parquet")
    inter = tables.interactions.frame
    inter.select([c for c in inter.columns if not c.startswith("_")]).write_parquet(
        out / "interactions.parquet"
    )
    if tables.users is not None:
        users = tables.users.frame
        users.select([c for c in users.columns if not c.startswith("_")]).write_parquet(
            out / "users.parquet"
        )
    return n


def steps(workdir: Path, key: str) -> dict[str, float]:
    out = {}
    for path in sorted((workdir / "runs" / key / "steps").glob("*.json")):
        record = json.loads(path.read_text())
        out[record["step"]] = record["seconds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "ml-latest-small")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of items changed")
    parser.add_argument(
        "--keep", type=Path, default=None, help="work in this new directory and keep it (bundles)"
    )
    args = parser.parse_args()
    header("nightly: full run vs incremental run (1% of item texts changed)")
    config = load_config(args.config)
    if args.keep is not None:
        args.keep.mkdir(parents=True)  # must be new: the full run starts from nothing
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    os.environ["RECSYS_MLFLOW_DIR"] = str(root / "mlflow")
    base, changed = root / "base", root / "changed"
    n_changed = changed_copy(args.data, changed, args.changed)
    changed_copy(args.data, base, 0.0)  # the same layout, nothing changed
    work = root / "work"
    say = lambda message: None  # noqa: E731
    start = time.perf_counter()
    full = run_nightly(base, config, work, say=say, progress=False)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    inc = run_nightly(changed, config, work, say=say, progress=False)
    inc_s = time.perf_counter() - start
    full_steps, inc_steps = steps(work, full.run_key), steps(work, inc.run_key)
    embed = json.loads((work / "runs" / inc.run_key / "steps" / "embed.json").read_text())
    encoder_s = full_steps.get("encoder", 0.0)
    print(f"data: {args.data}; {n_changed} items changed ({args.changed:.0%})")
    print(f"{'step':<10} {'full s':>8} {'incremental s':>14}")
    for name in full_steps:
        print(f"{name:<10} {full_steps[name]:>8.1f} {inc_steps.get(name, float('nan')):>14.1f}")
    print(f"full nightly wall time:        {full_s:8.1f} s  (encoder training {encoder_s:.1f} s)")
    print(f"incremental nightly wall time: {inc_s:8.1f} s")
    print(f"incremental / full:                      {inc_s / full_s:6.1%}  (goal <= 10%)")
    print(f"incremental / (full - encoder training): {inc_s / (full_s - encoder_s):6.1%}")
    print(f"re-embedded: {embed['result']['computed']} of {embed['result']['items']} items")
    print(f"outcomes: full {full.message!r}; incremental {inc.message!r}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept: {root} (work directory: {work})")


if __name__ == "__main__":
    main()
