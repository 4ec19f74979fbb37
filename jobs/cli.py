"""The `recsys` command: one sub-command per job module, each with --help and --config.

It lives in jobs/ rather than recsys/: it dispatches to jobs, and the library never imports jobs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from recsys import __version__
from recsys.errors import UserError
from recsys.logs import quiet_progress_bars_without_a_terminal

# (command, module under jobs/, one-line help). A command is listed only once it works.
COMMANDS: list[tuple[str, str, str]] = [
    ("data", "recsys.jobs.data", "validate a data directory or print its statistics"),
    ("nightly", "recsys.jobs.nightly", "the main job: train, evaluate, gate and publish a bundle"),
    ("bundles", "recsys.jobs.bundles", "list published bundles, verify one, or roll back"),
    (
        "evaluate",
        "recsys.jobs.evaluate",
        "offline A/B report of two bundles on held-out interactions",
    ),
    ("ab-report", "recsys.jobs.ab_report", "live A/B report from the API's exposure log"),
    ("recommend", "recsys.jobs.recommend", "batch top-k for all or listed users from a bundle"),
    ("serve", "recsys.jobs.serve", "the REST API under gunicorn"),
    ("live", "recsys.jobs.live", "export the live store (overlay items, events) as data files"),
    (
        "gc",
        "recsys.jobs.gc",
        "remove old bundles, runs, encoders and caches (the configured retention)",
    ),
    (
        "config",
        "recsys.jobs.config",
        "show or validate the effective config, or print its JSON Schema",
    ),
    ("train-encoder", "recsys.jobs.stage", "run the pipeline up to training the text encoder"),
    ("embed", "recsys.jobs.stage", "run the pipeline up to embedding every item"),
    ("build-index", "recsys.jobs.stage", "run the pipeline up to building the FAISS index"),
    (
        "train-collab",
        "recsys.jobs.stage",
        "run the pipeline up to training the collaborative model",
    ),
]


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the selected command's module is imported (torch, mlflow and friends
    load only for the commands that need them, so `recsys --help` and `recsys data` are quick)."""
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Recommendations from interactions and text: BERT two-tower + LightFM, "
        "FAISS, MLflow, a REST API.",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_progress_bars_without_a_terminal()  # before any command imports tqdm users
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:  # user-facing errors print cleanly; anything else keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:  # a path given on the command line that is not there
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
