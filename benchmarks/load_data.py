"""Benchmark (data stage): load_dataset time beside a bare polars.read_csv of the ratings file.

    python benchmarks/load_data.py --data ../shared/datasets/ml-latest-small
    python benchmarks/load_data.py --data ../shared/datasets/ml-100k

Prints the command, the machine, the median of --repeats runs of each (interleaved, same process),
their ratio, and the dataset's stats as a sanity check of the loader.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common
import polars as pl

from recsys.config import DataConfig
from recsys.data.loaders import load_dataset
from recsys.data.movielens import detect_movielens
from recsys.data.stats import dataset_stats, format_stats

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "ml-latest-small"
)


def bare_read(directory: Path) -> tuple[str, Callable[[], pl.DataFrame]]:
    """The peer: one polars.read_csv of the interactions file alone, types inferred."""
    layout = detect_movielens(directory)
    if layout == "ml-100k":
        path = directory / "u.data"
        return str(path), lambda: pl.read_csv(path, separator="\t", has_header=False)
    if layout == "ml-1m":
        path = directory / "ratings.dat"  # '::' is not a polars separator: one column per line
        return str(path), lambda: pl.read_csv(path, has_header=False, separator="\x1f")
    path = directory / ("ratings.csv" if layout == "ml-latest" else "interactions.csv")
    return str(path), lambda: pl.read_csv(path)


def machine() -> str:
    return common.machine(f"polars threads {pl.thread_pool_size()}; polars {pl.__version__}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data directory")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, median reported")
    args = parser.parse_args(argv)
    print("command:", shlex.join(["python", "benchmarks/load_data.py", *sys.argv[1:]]))
    print("machine:", machine())
    peer_file, peer = bare_read(args.data)
    load_times, peer_times = [], []
    for _ in range(args.repeats):  # interleaved so that machine load hits both alike
        peer_times.append(timed(peer))
        load_times.append(timed(lambda: load_dataset(args.data, DataConfig())))
    load_s, peer_s = statistics.median(load_times), statistics.median(peer_times)
    print(f"data: {args.data}")
    print(f"load_dataset (read+validate+index all tables)  median {load_s:.3f} s")
    print(f"peer: polars.read_csv({peer_file})  median {peer_s:.3f} s")
    print(f"ratio load_dataset / bare read_csv: {load_s / peer_s:.1f}x")
    print(format_stats(dataset_stats(load_dataset(args.data, DataConfig()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
