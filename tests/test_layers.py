"""The import graph between csrv2's subpackages (parsed with ast, nothing imported): one direction, no cycle.

MAY_IMPORT is the architecture in one table (docs/architecture.md draws it): what each subpackage may import besides
itself. A module's part is its subpackage (csrv2/head/codes.py → "head"); the basics (paths, files, hub, distributed, extras)
sit below everything, and the top (the `csrv2` command, export, the loaders of a trained model) above everything but
the experiments, which the command imports lazily so that `csrv2 train` does not load the benchmarks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csrv2"

BASICS = {"paths", "files", "hub", "distributed", "extras"}
TOP = {"", "cli", "export", "model", "model_folder"}  # "" is csrv2/__init__.py

MAY_IMPORT = {
    "basics": set(),
    "config": {"basics"},
    "head": {"config"},
    "assets": {"config"},
    "backbone": {"head", "assets"},
    "data": {"backbone"},
    "runs": {"head", "assets"},
    "index": {"head", "data"},  # index.build reads embeddings on disk in blocks (data.stacked_rows)
    "train": {"data", "runs"},
    "evaluation": {"data", "index", "runs"},
    "top": {"train", "evaluation"},
    "experiments": {"top"},  # everything below it, through the top
}
# The command loads a subcommand's experiment only when that subcommand runs (inside its function).
LAZY_ONLY = {("top", "experiments")}


def closure(part: str) -> set[str]:
    """Every part `part` may import: its own, the ones it names, and what those may import."""
    seen, todo = {part}, [part]
    while todo:
        for below in MAY_IMPORT[todo.pop()]:
            if below not in seen:
                seen.add(below)
                todo.append(below)
    return seen | {"basics"}


def module_name(path: Path) -> str:
    """csrv2/head/codes.py → "head.codes"; csrv2/head/__init__.py → "head"; csrv2/__init__.py → ""."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    """The subpackage (or "basics" / "top") a module belongs to."""
    first = module.split(".")[0]
    if module in TOP:
        return "top"
    if first in BASICS:
        return "basics"
    return first


def csrv2_imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    """(imported csrv2 module, statement) for every runtime import of a csrv2 module anywhere in the tree.

    Imports under `if TYPE_CHECKING:` are for annotations only and are left out."""
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from csrv2.head import codes` imports the module csrv2.head.codes; `from csrv2.head.codes import X`
            # imports csrv2.head.codes
            base = node.module
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}".removeprefix("csrv2.") in MODULES else base for a in node.names
            ]
        for name in names:
            if name == "csrv2" or name.startswith("csrv2."):
                found.append((name.removeprefix("csrv2").removeprefix("."), node))
    return found


def graph(lazy: bool = True) -> dict[str, set[str]]:
    """module → the csrv2 modules it imports (lazy=False: at the top of the file only)."""
    edges = {}
    for m, p in MODULES.items():
        tree = ast.parse(p.read_text())
        top_level = {id(node) for node in tree.body}
        edges[m] = {t for t, node in csrv2_imports(tree) if lazy or id(node) in top_level} - {""}
    return edges


def test_every_module_belongs_to_a_known_part():
    unknown = sorted({part_of(m) for m in MODULES} - set(MAY_IMPORT) - {"top"})
    assert not unknown, f"subpackages missing from MAY_IMPORT (add them, and to docs/architecture.md): {unknown}"


def test_no_subpackage_imports_one_it_may_not():
    lazy, eager = graph(), graph(lazy=False)
    wrong = [
        f"{m} ({part_of(m)}) imports {t} ({part_of(t)})"
        for m, targets in lazy.items()
        for t in targets
        if part_of(t) not in closure(part_of(m)) and ((part_of(m), part_of(t)) not in LAZY_ONLY or t in eager[m])
    ]
    assert not wrong, "\n".join(wrong)


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
    """Hidden imports hide the graph; the command is the one exception (it loads a subcommand's modules lazily)."""
    hidden = []
    for name, path in MODULES.items():
        if name == "cli":
            continue
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for target, node in csrv2_imports(tree):
            if id(node) not in top_level:
                hidden.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports csrv2.{target} inside a block")
    assert not hidden, "\n".join(hidden)


def test_the_layer_test_sees_a_wrong_import():
    """The checks above can fail: an upward import and a typing-only one are told apart."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nfrom csrv2.train.trainer import Trainer\n"
        "if TYPE_CHECKING:\n    from csrv2.model import SparseModel\n\ndef f():\n    from csrv2 import cli\n"
    )
    found = [t for t, _ in csrv2_imports(tree)]
    assert found == ["train.trainer", "cli"]
    assert part_of("train.trainer") not in closure(part_of("head.codes"))
    assert part_of("head.codes") in closure(part_of("train.trainer"))
    assert part_of("paths") in closure("config") and part_of("experiments.paper.grid") == "experiments"
