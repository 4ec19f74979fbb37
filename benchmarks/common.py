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
