"""The package reads in one direction: no module imports from a higher layer.

Every ``import`` / ``from ... import`` of ``salience_audit`` modules in the package's
source (function-level imports included) is parsed with :mod:`ast` and checked against the
layer table below (docs/architecture.md describes it). A module may import its own layer
and any lower one; ``audit`` and ``training`` share a rank and may not import each other. Inside ``report/`` the sub-layers are summary -> document -> render.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import salience_audit

PACKAGE = Path(salience_audit.__file__).parent

LAYERS: dict[str, int] = {
    "errors": 0,
    "profiles": 0,
    "atomic": 0,
    "device": 0,
    "jsonsafe": 0,
    "progress": 0,
    "folders": 0,
    "schema": 0,
    "data": 1,
    "models": 2,
    "salience": 3,
    "perturb": 4,
    "measures": 5,
    "stats": 6,
    "results": 7,
    "report": 8,
    "tracking": 8,
    "cli_options": 8,
    "audit": 9,
    "training": 9,
    "demo": 10,
    "cli": 10,
    "cli_config": 10,
    "notebook": 10,
    "__init__": 10,
}
"""Top-level module or package of ``salience_audit`` -> rank (imports only go to a lower or equal rank)."""

SIBLINGS: list[set[str]] = [{"audit", "training"}]
"""Packages of the same rank that must not import each other."""

REPORT_LAYERS: dict[str, int] = {"formatting": 0, "summary": 1, "document": 2, "render": 3, "__init__": 4}
"""Sub-layers of ``report/`` (``formatting`` is shared by all of them)."""


def _unit(module: str) -> str:
    """``salience_audit.report.summary.build`` -> ``report``; ``salience_audit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _report_unit(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] != "report":
        return None
    return parts[2] if len(parts) > 2 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``salience_audit`` import in a source file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "salience_audit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "salience_audit":
                continue
            if module == "salience_audit" or (node.module is None and node.level):
                # ``from salience_audit import x`` / ``from . import x``: x may be a submodule.
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def layer_violations(root: Path = PACKAGE) -> list[str]:
    """Every import from a higher layer (or across same-rank packages), as ``file:line: a -> b``."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        here = _module_name(path)
        src = _unit(here)
        if src not in LAYERS:
            problems.append(f"{path}: module {src!r} is missing from the layer table")
            continue
        for line, target in imported_modules(path):
            dst = _unit(target)
            if target in ("salience_audit", "salience_audit.__version__"):
                continue  # the package itself (its __version__ / __file__), imported by any module anyway
            if dst not in LAYERS:
                problems.append(f"{path}:{line}: imports {target}, which is missing from the layer table")
                continue
            if src == dst:
                rs, rd = _report_unit(here), _report_unit(target)
                if rs is not None and rd is not None and REPORT_LAYERS.get(rd, 99) > REPORT_LAYERS.get(rs, 99):
                    problems.append(f"{path}:{line}: report/{rs} -> report/{rd} ({target})")
                continue
            if LAYERS[dst] > LAYERS[src] or {src, dst} in SIBLINGS:
                problems.append(f"{path}:{line}: {src} -> {dst} ({target})")
    return problems


def test_no_import_from_a_higher_layer() -> None:
    assert layer_violations() == []


def test_every_package_is_in_the_layer_table() -> None:
    units = {p.name if p.is_dir() else p.stem for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("report/summary/x.py", "from salience_audit.audit.pipeline import run_audit"),
        ("measures/x.py", "import salience_audit.audit.batch"),
        ("results/x.py", "from salience_audit.report.summary import build"),
        ("training/x.py", "from salience_audit.audit import pipeline"),
        ("report/summary/x.py", "from salience_audit.report.render.html import write_report"),
        ("stats/x.py", "from ..results import store"),
        ("data/x.py", "from salience_audit import measures"),
    ],
)
def test_the_check_catches_an_upward_import(tmp_path: Path, source: str, target: str, monkeypatch) -> None:
    """A planted upward import in a copy of the package layout is reported."""
    root = tmp_path / "salience_audit"
    file = root / source
    for folder in [root, *[root.joinpath(*Path(source).parts[:k]) for k in range(1, len(Path(source).parts))]]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").touch()
    file.write_text(target + "\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", root)
    problems = [p for p in layer_violations(root) if str(file) in p]
    assert len(problems) == 1, problems
