"""Test helper, not shipped: makes an interpreter behave as an API-only install would.

Put on PYTHONPATH, Python imports this at start-up (so `recsys serve`, the gunicorn it execs and
its forked workers all run with it). Every top-level module named in $RECSYS_BLOCKED_MODULES
(comma-separated) is hidden from every import finder, so it behaves as a package that is not
installed: `import X` raises ModuleNotFoundError and `importlib.util.find_spec("X")` is None (what
libraries that probe for optional packages, torch and transformers among them, rely on). The
packages' distribution metadata stays visible; nothing in the API's path reads it.
"""

import os
import sys


class _Hiding:
    """Wraps one meta-path finder: blocked names are not found, everything else is delegated."""

    def __init__(self, finder, names: frozenset[str]) -> None:
        self._finder = finder
        self._names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self._names:
            return None
        return self._finder.find_spec(fullname, path, target)

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, name)


_blocked = frozenset(filter(None, os.environ.get("RECSYS_BLOCKED_MODULES", "").split(",")))
if _blocked:
    sys.meta_path[:] = [_Hiding(finder, _blocked) for finder in sys.meta_path]
