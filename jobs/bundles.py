"""Job: `recsys bundles list | rollback [VERSION] | verify [VERSION]` — published bundles."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_common_arguments, setup_logging, workdir
from recsys import bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundles_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="published bundles, oldest first, with their roles")
    listing.add_argument("--json", action="store_true", help="print the manifests as JSON")
    back = sub.add_parser("rollback", help="point CURRENT at VERSION (default: the previous one)")
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
        manifest = bundle.verify(bundle.bundles_dir(root) / version)
        print(f"ok: {version}: {len(manifest['files'])} files match the manifest")
        return 0
    manifests = bundle.list_bundles(root)
    if args.json:
        print(json.dumps(manifests, indent=2))
        return 0
    roles = {bundle.read_pointer(root, name): name for name in bundle.POINTERS}
    for manifest in manifests:
        metrics = manifest.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        role = roles.get(manifest["version"], "")
        print(f"{manifest['version']:<28} {role:<10} {manifest.get('error', shown)}")
    return 0
