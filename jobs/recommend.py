"""Job: `recsys recommend --all | --users FILE --k K --out FILE [--json]` — batch top-k from a
bundle (reads CURRENT or --bundle; writes the CSV/parquet file, a one-line summary or JSON)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from recsys.bundle import BundleError, current_bundle
from recsys.jobs.common import add_common_arguments, add_json_argument, emit, setup_logging, workdir
from recsys.ranking.model import RecommenderModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--all", action="store_true", help="every user the bundle knows")
    who.add_argument(
        "--users", type=Path, help="CSV/parquet with a user_id column, or one id a line"
    )
    parser.add_argument("--k", type=int, default=10, help="results per user (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: the current one)")
    add_json_argument(parser)  # a summary of what was written; the file itself is unchanged
    add_common_arguments(parser, config=False)  # a bundle carries its own config


def read_user_ids(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)
    else:
        return [
            line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    if "user_id" not in frame.columns:
        raise BundleError(f"{path}: expected a 'user_id' column, found {frame.columns}")
    return frame["user_id"].cast(pl.Utf8).to_list()


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    if args.k < 1:
        raise BundleError(f"--k must be >= 1, got {args.k}")
    if args.out.suffix not in (".csv", ".parquet"):
        raise BundleError(f"--out {args.out}: expected a .csv or .parquet file name")
    path = args.bundle or current_bundle(workdir(args))
    if path is None:
        raise BundleError(f"{workdir(args)}: no current bundle; run `recsys nightly` first")
    model = RecommenderModel.load(path)
    if args.k > len(model.item_map):  # top-k buffers are (users, k): refuse, never allocate
        n_items = len(model.item_map)
        raise BundleError(f"--k {args.k}: expected at most the bundle's {n_items} items ({path})")
    users = model.users.ids if args.all else read_user_ids(args.users)
    start = time.perf_counter()
    frame = model.rank_users(users, args.k)
    seconds = time.perf_counter() - start
    _write(frame, args.out)
    rate = len(users) / max(seconds, 1e-9)
    payload = {
        "bundle": model.version,
        "bundle_path": str(Path(path).resolve()),
        "users": len(users),
        "k": args.k,
        "rows": frame.height,
        "out": str(args.out.resolve()),
        "seconds": round(seconds, 3),
    }
    line = (
        f"{len(users)} users x top-{args.k} from bundle {model.version} -> {args.out} "
        f"({frame.height} rows, {rate:,.0f} users/s)"
    )
    emit(args, payload, [line])
    return 0


def _write(frame: pl.DataFrame, out: Path) -> None:
    """The whole file or nothing: a temp file beside it, then one rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    frame.write_parquet(tmp) if out.suffix == ".parquet" else frame.write_csv(tmp)
    tmp.replace(out)
