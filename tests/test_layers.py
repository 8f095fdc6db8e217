"""The import graph of csrv2 (parsed with ast, nothing imported): layers in one direction, no cycle, no hidden import.

LAYERS is the written layer order (docs/architecture.md draws it). A module may import modules of its own layer or
lower ones, never higher; the graph has no cycle; a csrv2 module is imported at the top of a file, never inside a
function (lazy imports are for optional heavy third-party packages only); and modules stay small.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csrv2"

LAYERS = {
    0: [
        "paths",
        "files",
        "strict",
        "codes",
        "losses",
        "schedule",
        "sampling",
        "tasks",
        "model_files",
        "wheel_pins",
        "st_format",
        "usage",
        "task_spec",
        "relabel",
        "balance",
        "provenance",
        "hub",
        "st_modules",
        "stacked_rows",
    ],
    1: ["config"],
    2: [
        "head",
        "baselines",
        "distributed",
        "embed_shards",
        "index",
        "index_kernels",
        "index_build",
        "index_inputs",
        "dense_index",
        "evaluate",
        "vectordb",
    ],
    3: ["assets", "taskfiles", "catalog", "backbones", "onnx_runtime"],
    4: [
        "embeddings",
        "arrays",
        "prepare",
        "finetune",
        "checkpoint",
        "objectives",
        "metrics",
        "safeguards",
        "model",
        "model_card",
    ],
    5: ["trainer", "run_eval", "export", "run_report", "mteb"],
    6: ["experiments", "cli"],  # experiments: every module of the csrv2.experiments package
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}
MAX_LINES = 400
LONGER_ALLOWED: set[str] = set()  # none: even the index kernels fit (csrv2/index_kernels.py)


def module_name(path: Path) -> str:
    """csrv2/head.py → "head"; csrv2/experiments/grid.py → "experiments.grid"; csrv2/__init__.py → ""."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    return LAYER_OF.get(module.split(".")[0])


def csrv2_imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    """(imported csrv2 module, statement) for every import of a csrv2 module anywhere in the tree."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from csrv2 import head` imports the module csrv2.head; `from csrv2.head import X` imports csrv2.head
            base = node.module
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}".removeprefix("csrv2.") in MODULES else base for a in node.names
            ]
        for name in names:
            if name == "csrv2" or name.startswith("csrv2."):
                found.append((name.removeprefix("csrv2").removeprefix("."), node))
    return found


def graph() -> dict[str, set[str]]:
    return {m: {target for target, _ in csrv2_imports(ast.parse(p.read_text()))} - {""} for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m and layer(m) is None]
    assert not missing, f"modules without a layer in LAYERS (add them, and to docs/architecture.md): {missing}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in graph().items()
        if layer(m) is not None
        for t in targets
        if layer(t) is not None and layer(t) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, set())):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " → ".join(path[path.index(t) :] + [m, t]))
            if t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [])


def test_csrv2_modules_are_imported_at_module_level_only():
    hidden = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for target, node in csrv2_imports(tree):
            if id(node) not in top_level:
                hidden.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports csrv2.{target} inside a block")
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("name", [m for m in MODULES if m], ids=str)
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    if name not in LONGER_ALLOWED:
        assert lines <= MAX_LINES, f"csrv2/{name.replace('.', '/')}.py has {lines} lines (> {MAX_LINES}): split it"


def test_the_layer_test_sees_an_upward_import(tmp_path):
    """The checks above can fail: an upward import written into a copy of a module is found."""
    tree = ast.parse("from csrv2.trainer import Trainer\n\ndef f():\n    from csrv2 import cli\n")
    found = [(t, isinstance(n, ast.ImportFrom)) for t, n in csrv2_imports(tree)]
    assert found == [("trainer", True), ("cli", True)]
    assert layer("trainer") > layer("head") and layer("experiments.grid") == 6
