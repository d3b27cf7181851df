"""The layered house holds: no module reaches into another's private names, every path the docs name exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "napari_pathalign"


def _own_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines itself: functions, classes, module globals and ``self._x`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def private_reaches(source: str) -> list[str]:
    """``obj._name`` on another module's object, or ``from x import _name``; dunders and own names are fine."""
    tree = ast.parse(source)
    own = _own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in own:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.append(f"line {node.lineno}: .{name}")
    return found


def test_the_checker_finds_what_it_looks_for():
    bad = "from napari_pathalign.x import _helper\nanalysis._claim_checker = 1\nprint(viewer._qt_viewer)\n"
    assert len(private_reaches(bad)) == 3
    good = (
        "class A:\n    def __init__(self):\n        self._x = 1\n    def copy(self, other):\n        return other._x\n"
    )
    assert private_reaches(good) == [] and private_reaches("x = y.__dict__\n") == []


def test_no_module_reaches_into_another_modules_private_names():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = private_reaches(path.read_text())
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, f"private names used across modules: {offenders}"


REPO_PATH = re.compile(
    r"(?<![\w./-])((?:napari_pathalign|resources|tests|examples|benchmarks|scripts|docs)/[\w./-]*[\w/])"
)


def test_every_repo_path_named_in_the_docs_exists():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "resources" / "MODEL_CARD.md"]
    # folders a command makes (benchmarks/data/ ...) are git-ignored and named in .gitignore
    made = tuple(line.strip() for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip().endswith("/"))
    missing = {}
    for doc in docs:
        for path in set(REPO_PATH.findall(doc.read_text())):
            if "*" in path or "<" in path or path.startswith(made):
                continue
            if not (ROOT / path.rstrip("/")).exists():
                missing.setdefault(doc.name, []).append(path)
    assert missing == {}, f"paths named in the docs that do not exist: {missing}"
