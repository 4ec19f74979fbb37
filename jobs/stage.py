"""Jobs: `recsys train-encoder | embed | build-index | train-collab --data DIR` — run the nightly
pipeline up to one stage (same work directory, same step manifests: a later nightly reuses it)."""

from __future__ import annotations

import argparse

from recsys.jobs import nightly

STAGE_STEPS = {
    "train-encoder": "encoder",
    "embed": "embed",
    "build-index": "index",
    "train-collab": "collab",
}

add_arguments = nightly.add_run_arguments


def run(args: argparse.Namespace) -> int:
    return nightly.run(args, until=STAGE_STEPS[args.command])
