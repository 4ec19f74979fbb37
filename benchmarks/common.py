"""Shared benchmark header: the exact command and the machine, printed before any figure."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def machine(extra: str = "") -> str:
    """CPU model, cores, torch threads, python and load; `extra` (a script's own figures) after."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        model = names[0] if names else model
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{model}; {os.cpu_count()} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); python {platform.python_version()}; "
        f"load average {load:.1f}"
    ) + (f"; {extra}" if extra else "")


def header(title: str) -> None:
    print(f"# {title}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}")


def parse_product(text: str) -> tuple[str, dict[str, str]]:
    """'LABEL' or 'LABEL:VAR=VALUE,VAR=VALUE' (RECSYS_* config overrides for the nightly); a
    VALUE may be JSON with commas inside brackets, e.g. RECSYS_BLEND__SOURCES=["text","collab"]."""
    label, _, rest = text.partition(":")
    setting = {}
    for pair in filter(None, _top_level_split(rest)):
        var, eq, value = pair.partition("=")
        if not eq or not var.startswith("RECSYS_"):
            raise SystemExit(f"setting {text!r}: expected LABEL[:RECSYS_X=V,...], found {pair!r}")
        setting[var] = value
    return label, setting


def _top_level_split(text: str) -> list[str]:
    """text split at the commas outside [] / {} (JSON lists and tables stay whole)."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c in "[{") - (c in "]}")
        if c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]
