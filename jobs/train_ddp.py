"""Jobs: encoder training over data-parallel ranks under torchrun, the same loop and prepared
inputs as the nightly's encoder step on Ray Train (recsys.training.ddp_encoder):

    torchrun --nproc_per_node 8 -m recsys.jobs.train_ddp --data DIR --config recsys.toml

Rank 0 loads and splits the data as the nightly does and prepares the inputs (pooled features
from the work directory's feature cache); every rank then trains its shard. The encoder directory
lands in <workdir>/encoders/<time>-<config hash> (or --out) with the nightly's trained.json marker,
so a nightly with encoder.retrain_every_days > 0 reuses it. Without torchrun: one rank.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from recsys.errors import UserError
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    fail,
    setup_logging,
    workdir,
)

PREPARE_TIMEOUT = timedelta(hours=2)  # ranks wait while rank 0 featurises the whole catalog


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node N -m recsys.jobs.train_ddp",
        description="Train the text encoder's towers on data-parallel ranks (DDP; gloo on CPU, "
        "NCCL on GPU) from a data directory, as the nightly's encoder step does on Ray.",
    )
    parser.add_argument("--data", type=Path, required=True, help="input data directory")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="encoder directory to write (default: <workdir>/encoders/<time>-<config hash>)",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from <out>/checkpoint/ when an interrupted run left one (same config)",
    )  # fmt: skip
    add_common_arguments(parser)
    add_json_argument(parser)
    return parser


def _init_group() -> bool:
    """The torch process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR ...); NCCL when
    this host has GPUs. False when not started by torchrun: one rank, no group."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=PREPARE_TIMEOUT)
    return True


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Rank 0: load, split and prepare; the loop's config (paths every rank reads)."""
    from recsys.config import config_hash
    from recsys.data.loaders import load_dataset
    from recsys.data.split import split_interactions
    from recsys.pipeline.context import ENCODERS, FEATURE_CACHE
    from recsys.training.ddp_encoder import RESULT
    from recsys.training.ddp_inputs import prepare_inputs

    pipeline, root = config(args), workdir(args)
    key = config_hash(pipeline.encoder)
    out = args.out or root / ENCODERS / f"{time.strftime('%Y%m%dT%H%M%S')}-{key[:8]}"
    out = Path(out).resolve()
    scratch = root / "ddp-inputs" / out.name
    dataset = load_dataset(args.data, pipeline.data)
    split = split_interactions(dataset.interactions, pipeline.split)
    cache = root / ENCODERS / FEATURE_CACHE
    enc, text = pipeline.encoder, pipeline.text
    prepare_inputs(dataset, split, enc, text, cache, scratch, progress=not args.quiet)
    threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    loop = {"inputs": str(scratch), "out": str(out), "result": str(scratch / RESULT)}
    return {**loop, "threads": threads, "resume": args.resume, "config_hash": key}


def _shared(args: argparse.Namespace, grouped: bool, rank: int) -> dict[str, Any]:
    """Rank 0 prepares; every rank gets its loop config, or rank 0's error (then all stop)."""
    message: list[Any] = [None]
    error: Exception | None = None
    if rank == 0:
        try:
            message = [_prepare(args)]
        except Exception as exc:  # noqa: BLE001 - the other ranks must hear of any failure
            error, message = exc, [f"{type(exc).__name__}: {exc}"]
    if grouped:
        import torch.distributed as dist

        dist.broadcast_object_list(message, src=0)
    if error is not None and not isinstance(error, UserError | ValueError | OSError):
        raise error  # a bug: its traceback
    if isinstance(message[0], str):
        raise SystemExit(fail(message[0], 1) if rank == 0 else 1)
    return message[0]


def _report(args: argparse.Namespace, loop: dict[str, Any]) -> None:
    """Rank 0: the nightly's marker in the encoder directory, the inputs removed, the result."""
    from recsys.pipeline.context import TRAINED

    out, scratch = Path(loop["out"]), Path(loop["inputs"])
    marker = {"config_hash": loop["config_hash"], "trained_at": time.time()}
    (out / TRAINED).write_text(json.dumps(marker), encoding="utf-8")
    result = json.loads(Path(loop["result"]).read_text(encoding="utf-8"))
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()  # <workdir>/ddp-inputs, unless another run is preparing there
    payload = {"encoder_dir": str(out), **result}
    best = result["history"][result["best_epoch"]]
    line = f"encoder {out}: best epoch {result['best_epoch']} of {len(result['history'])}, "
    line += f"valid NDCG@10 {best['valid_ndcg']:.4f}, {result['world']} ranks"
    emit(args, payload, [line])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    grouped = _init_group()
    import torch.distributed as dist

    from recsys.training.ddp_encoder import train_encoder_ranks

    rank = dist.get_rank() if grouped else 0
    try:
        loop = _shared(args, grouped, rank)
        train_encoder_ranks(loop)
        if grouped:
            dist.barrier()  # rank 0 has saved the encoder
        if rank == 0:
            _report(args, loop)
    finally:
        if grouped:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
