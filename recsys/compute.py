"""Ground: where the nightly's large loops run ([compute]): Ray Data actor pools over rows; the
only module that imports ray (as recsys/tracking.py is for MLflow). Reads columns of equal length,
returns each worker's output columns in the input's row order.

A worker is a class: constructed once per actor from keyword arguments (it loads its model from a
directory: a tokenizer shipped from the driver does not deserialise), then called with batches
`{column: (b, ...) array}` and returning `{ROW: batch[ROW], output: (b, ...) array}`. Ray Data does
not keep row order, so a row id travels with every row and the driver sorts by it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recsys.config import ComputeConfig
from recsys.errors import UserError

ROW = "__row"  # the row id column carried through every batch
log = logging.getLogger(__name__)


class ComputeError(UserError, RuntimeError):
    """The Ray backend cannot run: the extra is missing, the cluster is unreachable, or the
    workers returned something other than one result per row."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ComputeError(
            "[compute] backend = 'ray' needs Ray: pip install 'recsys-engine[nightly,cpu,ray]' "
            f"(import failed: {exc})"
        ) from None
    return ray


def connect(config: ComputeConfig) -> None:
    """Join the configured cluster once per process (config.address; unset: RAY_ADDRESS, else a
    local cluster). An already initialised Ray (a test fixture, `ray job submit`) is kept."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=config.address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ComputeError(f"cannot join the Ray cluster at {config.address!r}: {exc}") from exc


def map_batches(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    worker: type,
    worker_kwargs: Mapping[str, Any],
    config: ComputeConfig,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Every row of `columns` through `worker` on an actor pool of config.workers actors, each
    reserving config.cpus_per_worker CPUs (and gpus_per_worker GPUs); the workers' output
    columns, concatenated in input row order. An empty input returns {}."""
    ray = _ray()
    connect(config)
    import pyarrow as pa

    _quiet(ray)

    n = len(next(iter(columns.values())))
    if n == 0:
        return {}
    size = int(batch_size or config.batch_size)
    arrays = {ROW: np.arange(n, dtype=np.int64), **{k: _arrow(v) for k, v in columns.items()}}
    table = pa.table(arrays)
    # One block per batch: the actor pool hands blocks to whichever actor is free.
    blocks = [table.slice(start, size) for start in range(0, n, size)]
    resources: dict[str, Any] = {"num_cpus": config.cpus_per_worker}
    if config.gpus_per_worker > 0:
        resources["num_gpus"] = config.gpus_per_worker
    dataset = ray.data.from_arrow(blocks).map_batches(
        worker,
        fn_constructor_kwargs=dict(worker_kwargs),
        compute=ray.data.ActorPoolStrategy(size=config.workers),
        batch_size=size,
        batch_format="numpy",
        **resources,
    )
    parts = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    return restore_order(parts, n)


def _quiet(ray: Any) -> None:
    """Ray Data's progress bars and per-dataset INFO lines off: the nightly logs its own steps."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _arrow(values: Sequence[Any] | np.ndarray) -> Any:
    """A column for pyarrow: lists of arrays become list<...> columns, strings stay strings."""
    import pyarrow as pa

    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype != object:
        return values
    return pa.array([v.tolist() if isinstance(v, np.ndarray) else v for v in values])


def restore_order(parts: Sequence[Mapping[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """Batches that arrived in any order -> each output column (n, ...) in row order; every row
    id 0..n-1 must come back exactly once."""
    if not parts:
        raise ComputeError(f"the workers returned no rows for {n} inputs")
    rows = np.concatenate([np.asarray(p[ROW]) for p in parts])  # (n,)
    order = np.argsort(rows, kind="stable")
    if rows.size != n or not np.array_equal(rows[order], np.arange(n)):
        raise ComputeError(
            f"the workers returned {rows.size} rows with {np.unique(rows).size} distinct row ids "
            f"for {n} inputs (each row id 0..{n - 1} exactly once was expected)"
        )
    names = [k for k in parts[0] if k != ROW]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts])[order] for k in names}


def cap_threads(threads: int) -> None:
    """Inside a worker: torch's (and so ONNX Runtime's, which follows it) thread pool capped to
    the CPUs the actor reserved, so actors sharing a node do not oversubscribe it."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def worker_threads(config: ComputeConfig) -> int:
    """Threads one worker may use: the whole CPUs it reserves, at least one."""
    return max(1, int(config.cpus_per_worker))


def run_ranks(
    loop: Any, loop_config: Mapping[str, Any], config: ComputeConfig, storage: str
) -> None:
    """`loop(loop_config)` on config.train_workers ranks under Ray Train's TorchTrainer (gloo on
    CPU, NCCL when gpus_per_worker > 0): the torch process group is set up before `loop` runs.
    `storage`: Ray Train's storage_path (a path every node sees)."""
    ray = _ray()
    connect(config)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = config.gpus_per_worker > 0
    resources = {"CPU": config.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = config.gpus_per_worker
    trainer = TorchTrainer(
        loop,
        train_loop_config=dict(loop_config),
        scaling_config=ScalingConfig(
            num_workers=config.train_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(storage_path=storage),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:  # its message carries the ranks' tracebacks
        raise ComputeError(f"{config.train_workers} Ray Train ranks failed: {exc}") from exc
