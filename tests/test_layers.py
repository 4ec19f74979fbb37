"""The floor plan: imports flow with the data (house rule), checked on the source with `ast`.

Every `import` / `from ... import` in recsys/ and serving/ counts, including those inside functions
and under TYPE_CHECKING. Layers, lowest first: the ground modules (files directly in recsys/) ->
data -> text -> encoder (inference) | index | collab -> ranking -> evaluation -> training ->
pipeline. A folder may import its own modules and any lower layer, never a higher layer nor a
sibling of its own layer; folders form no cycle; serving never reaches the training code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS: list[tuple[str, ...]] = [
    ("recsys.data",),
    ("recsys.text",),
    ("recsys.encoder", "recsys.index", "recsys.collab"),
    ("recsys.ranking",),
    ("recsys.evaluation",),
    ("recsys.training",),
    ("recsys.pipeline",),
]
GROUND = 0  # the layer of recsys/*.py (config, schema, ids, errors, sources, bundle, tracking, ...)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from recsys import bundle` imports the module recsys.bundle
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_module(base, alias))
    return found


def _is_module(base: str, alias: ast.alias) -> bool:
    target = REPO.joinpath(*base.split("."), alias.name)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def folder_of(module: str) -> str | None:
    """recsys.<folder> for a module inside a sub-package of recsys, else None."""
    parts = module.split(".")
    if parts[0] != "recsys" or len(parts) < 2:
        return None
    return "recsys." + parts[1] if (REPO / "recsys" / parts[1]).is_dir() else None


def layer_of(module: str) -> int:
    folder = folder_of(module)
    if folder is None:
        return GROUND
    for number, folders in enumerate(LAYERS, start=1):
        if folder in folders:
            return number
    raise AssertionError(f"{folder} is in no layer of tests/test_layers.py: place it there")


def import_graph(root: str) -> dict[str, set[str]]:
    """module -> the recsys modules it imports, for every .py file under REPO/root."""
    return {
        module_name(path): {m for m in imported_modules(path) if m.split(".")[0] == "recsys"}
        for path in sorted((REPO / root).rglob("*.py"))
    }


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every arrow against the layer order (or across a layer), as 'importer -> imported'."""
    bad = []
    for module, targets in graph.items():
        own, mine = folder_of(module), layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if folder_of(target) == own and own is not None:
                continue  # inside one folder
            if theirs > mine or (theirs == mine and mine != GROUND):
                bad.append(f"{module} (layer {mine}) -> {target} (layer {theirs})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle reachable in a directed graph (each reported once, by its first node)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                loop = path[path.index(nxt) :] + [nxt]
                if sorted(loop[:-1]) not in [sorted(c[:-1]) for c in found]:
                    found.append(loop)
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Arrows between folders; each ground module is its own node."""
    node = lambda m: folder_of(m) or m  # noqa: E731
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges.setdefault(node(module), set()).update(
            node(t) for t in targets if node(t) != node(module)
        )
    return edges


@pytest.fixture(scope="module")
def recsys_graph() -> dict[str, set[str]]:
    return import_graph("recsys")


def test_every_recsys_folder_has_a_layer(recsys_graph):
    for module in recsys_graph:
        layer_of(module)


def test_imports_flow_with_the_data(recsys_graph):
    assert layer_violations(recsys_graph) == []


def test_no_cycle_between_folders_or_ground_modules(recsys_graph):
    assert cycles(folder_graph(recsys_graph)) == []


def test_the_checks_catch_a_bad_arrow_and_a_cycle(recsys_graph):
    """The checks themselves: an encoder module reaching training, and a loop, are reported."""
    graph = {m: set(t) for m, t in recsys_graph.items()}
    graph["recsys.encoder.model"].add("recsys.training.train")
    bad_arrow = "recsys.encoder.model (layer 3) -> recsys.training.train (layer 6)"
    assert bad_arrow in layer_violations(graph)
    graph["recsys.training.train"].add("recsys.pipeline.nightly")
    graph["recsys.pipeline.nightly"].add("recsys.training.train")
    loops = {frozenset(loop) for loop in cycles(folder_graph(graph))}
    assert frozenset({"recsys.pipeline", "recsys.training"}) in loops


def test_serving_never_imports_training_code():
    reached = {
        f"{module} -> {target}"
        for module, targets in import_graph("serving").items()
        for target in targets
        if target == "recsys.training" or target.startswith("recsys.training.")
    }
    assert reached == set()


def test_serving_never_reaches_training_code_through_the_library(recsys_graph):
    """What serving imports from recsys does not lead to recsys.training either (transitively)."""
    todo = sorted({t for ts in import_graph("serving").values() for t in ts})
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += recsys_graph.get(module, set())
    assert sorted(m for m in seen if m.startswith("recsys.training")) == []


MLFLOW_FILES = {REPO / "recsys" / "tracking.py", REPO / "recsys" / "ranking" / "mlflow_pyfunc.py"}


def test_library_never_imports_jobs_serving_or_mlflow():
    """recsys never imports jobs or serving; mlflow only in recsys/tracking.py and in the pyfunc
    model file MLflow loads by path (recsys/ranking/mlflow_pyfunc.py, imported by no module)."""
    bad = []
    for path in sorted((REPO / "recsys").rglob("*.py")):
        for target in imported_modules(path):
            top = target.split(".")[0]
            if top in ("jobs", "serving") or (top == "mlflow" and path not in MLFLOW_FILES):
                bad.append(f"{module_name(path)} -> {target}")
    assert bad == []
    importers = [
        m
        for m, targets in import_graph("recsys").items()
        if any("mlflow_pyfunc" in t for t in targets)
    ]
    assert importers == []  # MLflow loads it by path; importing it would run its set_model


RAY_FILES = {REPO / "recsys" / "compute.py"}


def test_only_recsys_compute_imports_ray():
    """Ray is an optional extra behind [compute]: one module imports it (as tracking.py holds
    MLflow), anywhere in the file; serving never does."""
    bad = [
        f"{module_name(path)} -> {target}"
        for root in ("recsys", "serving", "jobs")
        for path in sorted((REPO / root).rglob("*.py"))
        for target in imported_modules(path)
        if target.split(".")[0] == "ray" and path not in RAY_FILES
    ]
    assert bad == []
    assert "ray" in imported_modules(REPO / "recsys" / "compute.py")
