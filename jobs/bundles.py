"""Job: `recsys bundles list | rollback [VERSION] | verify [VERSION]` — published bundles.

`rollback` walks back through the champions (A -> B -> C -> D: C, B, then A); one that would change
nothing (CURRENT already names it, or no earlier champion is published) exits 1 and says why.
`rollback VERSION` also repairs an unreadable CURRENT."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.common import add_common_arguments, setup_logging, workdir
from recsys import bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundles_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="published bundles, oldest first, with their roles")
    listing.add_argument("--json", action="store_true", help="print the manifests as JSON")
    back = sub.add_parser(
        "rollback", help="point CURRENT at VERSION (default: the champion before the present one)"
    )
    back.add_argument("version", nargs="?", help="bundle version (default: previous champion)")
    check = sub.add_parser("verify", help="check every file's sha256 against the manifest")
    check.add_argument("version", nargs="?", help="bundle version (default: CURRENT)")
    for cmd in (listing, back, check):
        add_common_arguments(cmd)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.quiet)
    root = workdir(args)
    if args.bundles_command == "rollback":
        version = bundle.rollback(root, args.version)
        print(f"CURRENT -> {version}")
        return 0
    if args.bundles_command == "verify":
        version = args.version or bundle.read_pointer(root)
        if version is None:
            raise bundle.BundleError(f"{root}: no CURRENT bundle to verify")
        manifest = bundle.verify(bundle.bundle_path(root, version))
        print(f"ok: {version}: {len(manifest['files'])} files match the manifest")
        return 0
    return _list(root, args.json)


def _list(root: Path, as_json: bool) -> int:
    """The bundles, then (exit 1) each pointer that cannot be read: a repair needs the list."""
    manifests = bundle.list_bundles(root)
    roles, broken = {}, []
    for name in bundle.POINTERS:
        try:
            roles[bundle.read_pointer(root, name)] = name
        except bundle.BundleError as exc:
            broken.append(str(exc))
    if as_json:
        print(json.dumps(manifests, indent=2))
    for manifest in [] if as_json else manifests:
        metrics = manifest.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        role = roles.get(manifest["version"], "")
        print(f"{manifest['version']:<28} {role:<10} {manifest.get('error', shown)}")
    for message in broken:
        print(f"error: {message}", file=sys.stderr)
    return 1 if broken else 0
