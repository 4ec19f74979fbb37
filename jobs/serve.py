"""Serving job: `recsys serve` — replaces itself with gunicorn running recsys.serving.wsgi:app
under the checked-in serving/gunicorn_conf.py (reads the work directory's bundles; writes nothing
itself)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from recsys import bundle
from recsys.jobs import common
from recsys.serving import live

GUNICORN_CONF = live.GUNICORN_CONF


ENV_INTS = {"RECSYS_WORKERS": "--workers", "RECSYS_THREADS": "--threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser, quiet=False)  # gunicorn logs: its own settings
    parser.add_argument(
        "--host", help=f"address to bind (default: $RECSYS_BIND, else {live.DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=int, help=f"port to bind (default: $RECSYS_BIND, else {live.DEFAULT_PORT})"
    )
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (default: $RECSYS_WORKERS, else 2)"
    )
    parser.add_argument(
        "--threads", type=int, help="request threads per worker (default: $RECSYS_THREADS, else 4)"
    )


def gunicorn_command(args: argparse.Namespace) -> list[str]:
    """The exact command line `recsys serve` execs (flags only for what was given)."""
    return live.gunicorn_command(args.host, args.port, args.workers, args.threads)


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments or the RECSYS_* serving variables, or None."""
    if args.port is not None and not 1 <= args.port <= 65535:
        return f"--port must be in 1..65535, found {args.port}"
    for name in ("workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name} must be >= 1, found {value}"
    for variable, flag in ENV_INTS.items():
        raw = os.environ.get(variable)
        if raw is not None and getattr(args, flag[2:]) is None:
            if not raw.isdigit() or int(raw) < 1:
                return f"${variable} must be an integer >= 1 (like {flag}), found {raw!r}"
    bind = os.environ.get("RECSYS_BIND")
    if bind is not None and args.host is None and args.port is None:
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"$RECSYS_BIND must be HOST:PORT, found {bind!r}"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        return common.fail(problem)
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
    path = common.config_file(args)
    if path is not None:
        env[common.CONFIG_ENV] = str(path.resolve())
    command = gunicorn_command(args)
    print("exec:", " ".join(command), file=sys.stderr)
    os.execve(command[0], command, env)
    return 0  # not reached: execve replaces this process
