"""Job: `recsys bundles list | rollback [VERSION] | verify [VERSION] [--json]` — published bundles.

`rollback` walks back through the champions (A -> B -> C -> D: C, B, then A); one that would change
nothing (CURRENT already names it, or no earlier champion is published) exits 1 and says why.
`rollback VERSION` also repairs an unreadable CURRENT. Then the MLflow `champion` alias follows
CURRENT, with the reason recorded on the version; when it cannot (nothing registered, MLflow
down), the rollback still stands: a warning, exit 0 (a retried rollback would go back further)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recsys import bundle, tracking
from recsys.jobs.common import (
    add_common_arguments,
    add_json_argument,
    config,
    emit,
    setup_logging,
    workdir,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundles_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="published bundles, oldest first, with their roles")
    back = sub.add_parser(
        "rollback", help="point CURRENT at VERSION (default: the champion before the present one)"
    )
    back.add_argument("version", nargs="?", help="bundle version (default: previous champion)")
    back.add_argument("--reason", default="", help="why, recorded with the MLflow alias")
    back.add_argument(
        "--no-tracking", action="store_true", help="leave the MLflow champion alias alone"
    )
    check = sub.add_parser("verify", help="check every file's sha256 against the manifest")
    check.add_argument("version", nargs="?", help="bundle version (default: CURRENT)")
    for cmd in (listing, back, check):
        add_json_argument(cmd)
    add_common_arguments(back)  # the config names the MLflow registered model
    for cmd in (listing, check):  # read no config, log nothing
        add_common_arguments(cmd, config=False, quiet=False)


def run(args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "quiet", False))
    root = workdir(args)
    if args.bundles_command == "rollback":
        return _rollback(args, root)
    if args.bundles_command == "verify":
        version = args.version or bundle.read_pointer(root)
        if version is None:
            raise bundle.BundleError(f"{root}: no CURRENT bundle to verify")
        path = bundle.bundle_path(root, version)
        manifest = bundle.verify(path)
        n = len(manifest["files"])
        payload = {"version": version, "path": str(path), "ok": True, "files": n}
        emit(args, payload, [f"ok: {version}: {n} files match the manifest"])
        return 0
    return _list(root, args.json)


def _rollback(args: argparse.Namespace, root: Path) -> int:
    # The config first: a bad one stops the command before anything has moved.
    name = tracking.registered_model_name(root, config(args).nightly.registered_model)
    try:
        previous = bundle.read_pointer(root)
    except bundle.BundleError:
        previous = None  # an unreadable CURRENT: rollback VERSION repairs it
    version = bundle.rollback(root, args.version)
    alias = None
    if not args.no_tracking:
        reason = f"rollback (recsys bundles rollback) from {previous or 'nothing'} to {version}"
        alias = _follow(root, name, version, reason + (f": {args.reason}" if args.reason else ""))
    payload = {"current": version, "previous": previous, "alias": alias}
    lines = [f"CURRENT -> {version}"]
    if alias is not None and alias["moved"]:
        lines.append(f"{name}@champion -> version {alias['registry_version']}")
    emit(args, payload, lines)
    return 0


def _follow(root: Path, name: str, version: str, reason: str) -> dict[str, Any]:
    """Point the champion alias at the rolled-back-to version; say (stderr) why not if not."""
    out: dict[str, Any] = {"name": name, "alias": tracking.CHAMPION, "moved": False}
    off = tracking.registry_off(root)
    if off is not None:
        print(f"MLflow alias not moved: {off}", file=sys.stderr)
        return {**out, "note": off}
    try:
        registry_version = tracking.set_alias(name, tracking.CHAMPION, version, reason, root)
    except Exception as exc:  # noqa: BLE001 - CURRENT has moved; the registry is bookkeeping
        warning = (
            f"CURRENT names {version} but the MLflow alias {name}@champion was not "
            f"moved: {type(exc).__name__}: {exc}"
        )
        print(f"warning: {warning}", file=sys.stderr)
        return {**out, "note": warning}
    return {**out, "moved": True, "registry_version": registry_version}


def _list(root: Path, as_json: bool) -> int:
    """The bundles, then (exit 1) each pointer that cannot be read: a repair needs the list."""
    manifests = bundle.list_bundles(root)
    roles, broken = {}, []
    for name in bundle.POINTERS:
        try:
            roles[bundle.read_pointer(root, name)] = name
        except bundle.BundleError as exc:
            broken.append(str(exc))
    if as_json:  # the manifests, each with its role (CURRENT, CHALLENGER or null)
        print(json.dumps([{**m, "role": roles.get(m["version"])} for m in manifests], indent=2))
    for manifest in [] if as_json else manifests:
        metrics = manifest.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        role = roles.get(manifest["version"], "")
        print(f"{manifest['version']:<28} {role:<10} {manifest.get('error', shown)}")
    for message in broken:
        print(f"error: {message}", file=sys.stderr)
    return 1 if broken else 0
