"""Benchmark (issue 4 tuning aid): validation curves of the text towers for EncoderConfig variants.

Trains the towers on the CPU frozen path, on quality.py's training split (leave-last-two-out),
once per variant, and prints validation Recall@10 / NDCG@10 after every epoch, so variants can
be compared epoch by epoch rather than by one noisy best value. Early stopping is off (the run
ends at --epochs or --minutes). Run two variants side by side with --threads 1 each on a 2-core
machine; compare curves from the same run only.

    python benchmarks/tower_curves.py --dataset ml-latest-small --minutes 11 \
        --set history_len=20 [--set lr=0.004 ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import quality
import torch
from common import machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--data-root", type=Path, default=quality.DATA_ROOT)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--set",
        dest="overrides",
        type=quality.key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="EncoderConfig field (repeatable)",
    )
    parser.add_argument("--cache", type=Path, default=quality.parse_args([]).cache)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine())

    from recsys.config import EncoderConfig, SplitConfig, TextConfig
    from recsys.data import load_dataset
    from recsys.data.split import Split, split_interactions
    from recsys.training.train import train_encoder

    ds = load_dataset(args.data_root / args.dataset)
    split = split_interactions(ds.interactions, SplitConfig(n_test=1, n_valid=1))
    config = EncoderConfig(
        path="frozen", device="cpu", max_minutes=args.minutes, epochs=args.epochs,
        patience=args.epochs, **dict(args.overrides),
    )  # fmt: skip
    train_only = Split(train=split.train, valid=split.valid, test=split.valid.clear())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="curves-") as out:
        trained = train_encoder(
            ds, train_only, config, TextConfig(), Path(out), progress=False, cache_dir=args.cache
        )
    print(f"variant {dict(args.overrides)}: {time.perf_counter() - start:.0f} s")
    print(f"{'epoch':>5s} {'loss':>7s} {'valid Recall@10':>15s} {'valid NDCG@10':>13s}")
    for record in trained.history:
        print(
            f"{int(record['epoch']):5d} {record['loss']:7.4f} {record['valid_recall']:15.4f} "
            f"{record['valid_ndcg']:13.4f}"
        )
    print("history:", json.dumps(trained.history))
    return 0


if __name__ == "__main__":
    sys.exit(main())
