"""Benchmark peer trained on another machine: SASRec-CE on a GPU, its lists read back here.

SASRec-CE on dense ml-latest-small takes hours per seed on one CPU thread and a minute or two on
a GPU. `export` writes each variant's rounds (benchmarks/peers.Rounds: the tuning split of REST
and the outside test round) as plain arrays; `sasrec` trains SASRec-CE from those arrays exactly
as peers.sasrec_seeds does (benchmarks/sasrec.py, early stopping on the validation NDCG@10 of the
shared metric kernel) and writes each seed's top-10 of the test round. It needs numpy, torch and
this repository on the path, nothing else, so it runs on a bare GPU machine. published_quality.py
--peer-cache DIR then scores those lists with the shared kernel instead of training SASRec, once
it has checked that the arrays' hash equals that of the rounds it built itself (same REST, same
hold-out, same users in the same order); a missing or stale file trains SASRec here as before.

    .venv/bin/python benchmarks/peer_cache.py export --datasets ml-100k ml-latest-small --out DIR
    python3 benchmarks/peer_cache.py sasrec --dir DIR --seeds 0 1 2 --jobs 12    # GPU machine
    .venv/bin/python benchmarks/published_quality.py --datasets ... --peer-cache DIR

DIR holds data derived from MovieLens: keep it outside the repository's tracked files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

K = 10
ROUNDS = ("valid", "test")  # each: histories, exclude, relevant (ragged)


def ragged(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list of int arrays; offsets (n + 1,)."""
    sizes = np.array([np.size(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values = (
        np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays])
        if arrays
        else np.zeros(0, np.int64)
    )
    return values, offsets


def unragged(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[i] : offsets[i + 1]] for i in range(offsets.size - 1)]


def rounds_arrays(rounds, sparse: bool) -> dict[str, np.ndarray]:
    """A peers.Rounds as arrays: per-user_idx training histories and, per round, each held-out
    user's history, excluded items and relevant items, in the round's user order."""
    from recsys.pipeline.fit import histories

    out: dict[str, np.ndarray] = {
        "n_items": np.array(rounds.n_items),
        "max_len": np.array(50 if sparse else 200),  # the recipe (peers.sasrec_config)
    }
    out["train"], out["train_offsets"] = ragged(histories(rounds.train, rounds.n_users))
    for name in ROUNDS:
        held = getattr(rounds, name)
        out[f"{name}_users"] = np.asarray(held.user_idx, dtype=np.int64)
        out[f"{name}_history"], out[f"{name}_history_offsets"] = ragged(
            [q.history for q in held.queries]
        )
        out[f"{name}_exclude"], out[f"{name}_exclude_offsets"] = ragged(held.exclude)
        out[f"{name}_relevant"], out[f"{name}_relevant_offsets"] = ragged(held.relevant)
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        if key != "fingerprint":
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()[:16]


def export(names: Sequence[str], root: Path, out: Path) -> None:
    from outside_in import load_variant
    from peers import Rounds

    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        variant = load_variant(root, name)
        arrays = rounds_arrays(Rounds.of(variant), variant.sparse)
        np.savez(out / f"{name}.npz", **arrays, fingerprint=np.array(fingerprint(arrays)))
        print(f"{name}: {out / f'{name}.npz'} (fingerprint {fingerprint(arrays)})")


def _round(arrays: dict, name: str, part: str) -> list[np.ndarray]:
    return unragged(arrays[f"{name}_{part}"], arrays[f"{name}_{part}_offsets"])


def train_one(path: Path, seed: int, out: Path, max_epochs: int | None = None) -> None:
    """SASRec-CE on one exported variant and seed: writes <out>/<name>-seed<S>.npz (top-10 of
    the test round, fit facts)."""
    import sasrec
    import torch

    from recsys.evaluation.metrics import per_user_metrics

    torch.set_num_threads(1)  # several jobs share the machine's cores
    arrays = dict(np.load(path))
    n_items, max_len = int(arrays["n_items"]), int(arrays["max_len"])
    train = unragged(arrays["train"], arrays["train_offsets"])
    valid_history = _round(arrays, "valid", "history")
    valid_exclude = _round(arrays, "valid", "exclude")
    valid_relevant = _round(arrays, "valid", "relevant")

    def validate(model: sasrec.SASRec) -> float:
        ranked = sasrec.recommend(model, valid_history, valid_exclude, K)
        return float(per_user_metrics(ranked, valid_relevant, K, ("ndcg",))["ndcg"].mean())

    config = sasrec.SASRecConfig(max_len=max_len, seed=seed)
    if max_epochs is not None:  # a check of the script, not the recipe
        config = replace(config, max_epochs=max_epochs)
    fitted = sasrec.fit(
        train, n_items, config, validate, lambda m: print(f"{path.stem} s{seed}: {m}", flush=True)
    )
    ranked = sasrec.recommend(
        fitted.model, _round(arrays, "test", "history"), _round(arrays, "test", "exclude"), K
    )
    device = next(fitted.model.parameters()).device
    info = {
        "seed": seed, "best_epoch": fitted.best_epoch, "epochs": fitted.epochs,
        "valid_ndcg": fitted.best_valid, "train_seconds": round(fitted.seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }  # fmt: skip
    np.savez(
        out / f"{path.stem}-seed{seed}.npz",
        ranked=ranked,
        fingerprint=arrays["fingerprint"],
        info=np.array(json.dumps(info)),
    )
    print(f"{path.stem} seed {seed}: {info}", flush=True)


def train_all(
    directory: Path, seeds: Sequence[int], jobs: int, deadline: float, extra: Sequence[str] = ()
) -> None:
    """Every exported variant x seed as its own process (`jobs` at once); after `deadline`
    seconds the stragglers are stopped. Then one <name>-sasrec.npz per variant from the seeds
    that finished (ranked (S, n_test, K), seeds, fingerprint, info)."""
    parts = directory / "parts"
    parts.mkdir(exist_ok=True)
    exported = [p for p in sorted(directory.glob("*.npz")) if not p.stem.endswith("-sasrec")]
    todo = [(path, seed) for path in exported for seed in seeds]
    start, running = time.monotonic(), []
    while todo or running:
        running = [r for r in running if r.poll() is None]
        while todo and len(running) < jobs:
            path, seed = todo.pop(0)
            cmd = [sys.executable, __file__, "sasrec-one", str(path), str(seed), str(parts), *extra]
            running.append(subprocess.Popen(cmd))
        if time.monotonic() - start > deadline:
            for proc in running:
                proc.kill()
            print(f"deadline {deadline:.0f} s: stopped {len(running)} job(s), {len(todo)} not run")
            break
        time.sleep(1.0)
    for path in exported:
        done = sorted(parts.glob(f"{path.stem}-seed*.npz"))
        if not done:
            continue
        loaded = [dict(np.load(d)) for d in done]
        np.savez(
            directory / f"{path.stem}-sasrec.npz",
            ranked=np.stack([d["ranked"] for d in loaded]),
            seeds=np.array([json.loads(str(d["info"]))["seed"] for d in loaded]),
            fingerprint=loaded[0]["fingerprint"],
            info=np.array(json.dumps([json.loads(str(d["info"])) for d in loaded])),
        )
        print(f"{path.stem}: {len(loaded)} seed(s) -> {directory / f'{path.stem}-sasrec.npz'}")


def cached_sasrec(directory: Path, name: str, rounds, sparse: bool, seeds: Sequence[int]):
    """The cached SASRec-CE top-10 lists of `seeds` for this variant's rounds, or None (with the
    reason) when the file is missing, lacks a seed, or was made from other rounds."""
    path = directory / f"{name}-sasrec.npz"
    if not path.is_file():
        return None, f"no {path}"
    data = dict(np.load(path))
    expected = fingerprint(rounds_arrays(rounds, sparse))
    if str(data["fingerprint"]) != expected:
        return None, f"{path}: made from other rounds ({data['fingerprint']} != {expected})"
    cached = [int(s) for s in data["seeds"]]
    missing = [s for s in seeds if s not in cached]
    if missing:
        return None, f"{path}: seeds {missing} missing (has {cached})"
    info = {d["seed"]: d for d in json.loads(str(data["info"]))}
    ranked = {seed: data["ranked"][cached.index(seed)] for seed in seeds}
    return (ranked, [info[s] for s in seeds]), str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write each variant's rounds as arrays")
    ex.add_argument("--datasets", nargs="+", required=True)
    ex.add_argument("--data-root", type=Path, default=None)
    ex.add_argument("--out", type=Path, required=True)
    tr = sub.add_parser("sasrec", help="train SASRec-CE on every exported variant")
    tr.add_argument("--dir", type=Path, required=True)
    tr.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    tr.add_argument("--jobs", type=int, default=1, help="processes at once")
    tr.add_argument("--deadline", type=float, default=1e9, help="seconds, then stop and merge")
    tr.add_argument("--max-epochs", type=int, help="fewer epochs: a check of the script only")
    one = sub.add_parser("sasrec-one")
    one.add_argument("path", type=Path)
    one.add_argument("seed", type=int)
    one.add_argument("out", type=Path)
    one.add_argument("--max-epochs", type=int)
    args = parser.parse_args(argv)
    if args.command == "export":
        from common import SHARED

        export(args.datasets, args.data_root or SHARED, args.out)
    elif args.command == "sasrec":
        extra = [] if args.max_epochs is None else ["--max-epochs", str(args.max_epochs)]
        train_all(args.dir, args.seeds, args.jobs, args.deadline, extra)
    else:
        train_one(args.path, args.seed, args.out, args.max_epochs)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # sasrec, peers, outside_in
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # recsys without installing
    raise SystemExit(main())
