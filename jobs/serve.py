"""Serving job: `recsys serve` — replaces itself with gunicorn running serving.wsgi:app under the
checked-in serving/gunicorn_conf.py (reads the work directory's bundles; writes nothing itself)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from jobs import common
from recsys import bundle
from serving import live

GUNICORN_CONF = live.GUNICORN_CONF


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="request threads per worker")


def gunicorn_command(args: argparse.Namespace) -> list[str]:
    """The exact command line `recsys serve` execs."""
    return live.gunicorn_command(args.host, args.port, args.workers, args.threads)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        return common.fail(f"--port must be in 1..65535, found {args.port}")
    if args.workers < 1 or args.threads < 1:
        return common.fail(f"--workers and --threads must be >= 1 ({args.workers}, {args.threads})")
    if importlib.util.find_spec("gunicorn") is None:
        return common.fail(f"gunicorn is not installed for {sys.executable}")
    cfg = common.config(args)  # a bad config fails here, with a clear message, not in every worker
    if cfg.serving.poll_seconds <= 0 and args.workers > 1:
        return common.fail(
            f"[serving] poll_seconds = 0 with --workers {args.workers}: a worker that does not "
            "poll misses reloads and rollbacks made through its siblings; set poll_seconds > 0 "
            "or --workers 1"
        )
    workdir = common.workdir(args)
    if bundle.read_pointer(workdir) is None:
        print(
            f"warning: {workdir} has no CURRENT bundle yet; /readyz answers 503 until one is "
            "published (recsys nightly)",
            file=sys.stderr,
        )
    env = dict(os.environ, RECSYS_WORKDIR=str(workdir))
    if args.config is not None:
        env["RECSYS_CONFIG"] = str(Path(args.config).resolve())
    command = gunicorn_command(args)
    print("exec:", " ".join(command), file=sys.stderr)
    os.execve(command[0], command, env)
    return 0  # not reached: execve replaces this process
