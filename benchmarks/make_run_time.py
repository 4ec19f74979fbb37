"""Benchmark (pipeline): the wall time of `make run`'s nightly on the bundled sample, settings side
by side, in alternating rounds (the encoder's time moves with the machine's load by more than the
differences measured, so each setting is run once per round, in turn).

    python benchmarks/make_run_time.py [--rounds 2] [--baseline-ref 4b2e31b]
        [--settings LABEL[:RECSYS_X=V,...] ...] [--data data/sample] [--config configs/sample.toml]

Each run is `recsys nightly --data D --config C --json` in a fresh work directory with MLflow
tracking on (a fresh sqlite store), as `make run` does; the time is the subprocess's wall time
(interpreter start included). --settings: RECSYS_* overrides of this checkout's config (the
first is the reference of the ratios). --baseline-ref: the same nightly at a git commit of this
repository, run from a temporary worktree with this checkout's installed packages (for commits
whose CLI is the top-level `jobs` package: before the layout of today's recsys.jobs). Prints
per setting each round's wall time, the mean, the ratio to the first setting, and the mean time
of each step from the run's step records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from common import header, parse_product

ROOT = Path(__file__).resolve().parents[1]
CURRENT = "recsys.jobs.cli"  # this checkout's CLI module (pyproject's `recsys` script)


def baseline_tree(ref: str, scratch: Path) -> tuple[Path, str]:
    """A worktree of `ref` and its CLI module, or SystemExit saying why it cannot run here."""
    tree = scratch / f"ref-{ref}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), ref], check=True
    )
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    module = scripts["recsys"].split(":")[0]
    if module.startswith("recsys."):  # mapped by the editable install to this checkout's code
        remove_tree(tree)
        raise SystemExit(f"--baseline-ref {ref}: its CLI {module} needs its own install")
    return tree, module


def remove_tree(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
    )


def one_run(
    module: str, env: dict[str, str], data: Path, config: Path, scratch: Path, cwd: Path
) -> dict:
    """One nightly in a fresh work directory, from `cwd` (`python -c` puts it first on the
    import path: the code that runs): wall seconds and each step's seconds."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RECSYS_MLFLOW_DIR": str(work / "mlflow"),
        **env,
    }
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    args = ["nightly", "--data", str(data), "--config", str(config), "--workdir", str(work / "w")]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nightly failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    steps = {s["step"]: s["seconds"] for s in json.loads(proc.stdout)["steps"]}
    return {"wall": wall, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=["defaults"])
    parser.add_argument("--baseline-ref", help="git commit whose nightly runs beside (last)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sample.toml")
    args = parser.parse_args()
    header("make run's nightly on the bundled sample: wall time, settings side by side")
    runs = [(label, CURRENT, env, ROOT) for label, env in map(parse_product, args.settings)]
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        tree = None
        if args.baseline_ref:
            tree, module = baseline_tree(args.baseline_ref, scratch)
            runs.append((f"commit {args.baseline_ref}", module, {"PYTHONPATH": str(tree)}, tree))
        results: dict[str, list[dict]] = {label: [] for label, *_ in runs}
        try:
            for number in range(args.rounds):
                for label, module, env, cwd in runs:
                    files = args.data.resolve(), args.config.resolve()
                    done = one_run(module, env, *files, scratch, cwd)
                    results[label].append(done)
                    print(f"round {number + 1}  {label}: {done['wall']:.1f} s", flush=True)
        finally:
            if tree is not None:
                remove_tree(tree)
    first = runs[0][0]
    reference = sum(r["wall"] for r in results[first]) / args.rounds
    print("\n| setting | rounds (s) | mean (s) | / " + first + " |\n|---|---|---|---|")
    for label, done in results.items():
        walls = [r["wall"] for r in done]
        mean = sum(walls) / len(walls)
        rounds = ", ".join(f"{w:.1f}" for w in walls)
        print(f"| {label} | {rounds} | {mean:.1f} | x{mean / reference:.3f} |")
    names = list(dict.fromkeys(s for done in results.values() for r in done for s in r["steps"]))
    print("\nmean seconds per step (steps a setting skips: -)\n")
    print("| step | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for name in names:
        cells = []
        for done in results.values():
            values = [r["steps"][name] for r in done if name in r["steps"]]
            cells.append(f"{sum(values) / len(values):.2f}" if values else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
