"""The install is honest: the declared Python range, the core holding exactly what the code imports,
optional packages behind one-line errors that name their extra, and a resolvable dependency set on
every declared Python version (scripts/check-install, which needs the package registry)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from salience_audit.errors import EXIT_MISSING_EXTRA, MissingExtraError, require_extra

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

OPTIONAL = {  # module imported behind require_extra (or only in a function of the demo) -> its extra
    "skimage": "demo",
    "gan_face_generate": "demo",
    "ray": "ray",
    "mlflow": "mlflow",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "timm": "byo",
    "safetensors": "byo",
    "pytorch_grad_cam": "byo",
}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def _imported_top_level_modules() -> set[str]:
    """Top-level names of every module that salience_audit's own code imports (absolute imports)."""
    names: set[str] = set()
    for path in (ROOT / "salience_audit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require_extra"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(str(node.args[0].value).split(".")[0])
    return names - set(sys.stdlib_module_names) - {"salience_audit", "tomli"}


def test_requires_python_is_exactly_the_tested_range():
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(PROJECT["requires-python"])
    declared = [c.rsplit("::", 1)[1].strip() for c in PROJECT["classifiers"] if re.search(r":: 3\.\d+$", c)]
    assert declared == ["3.11", "3.12", "3.13"]
    assert all(spec.contains(f"{v}.0") for v in declared)
    assert not spec.contains("3.10.13") and not spec.contains("3.14.0")  # 3.10: torchcam 0.4 wants numpy<2


def test_core_dependencies_are_exactly_what_the_core_imports():
    dists = packages_distributions()
    imported = _imported_top_level_modules()
    core_modules = imported - set(OPTIONAL)
    core_dists = {_name(d) for m in core_modules for d in dists.get(m, [m])}
    declared = {_name(r) for r in PROJECT["dependencies"]}
    assert core_dists == declared, f"imported but not declared: {core_dists - declared}; declared, unused: " \
                                   f"{declared - core_dists}"
    extras = PROJECT["optional-dependencies"]
    for module, extra in OPTIONAL.items():
        assert module in imported, f"{module} is no longer imported: drop it from OPTIONAL and its extra"
        wanted = {_name(d) for d in dists.get(module, [module])}
        in_extra = {_name(r) for r in extras[extra]}
        assert wanted & (in_extra | {"mlflow"}), f"{module} is not in the extra {extra!r}"


def test_missing_optional_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError) as err:
        require_extra("ray", "ray", "the ray engine")
    assert str(err.value) == "the ray engine needs the optional package 'ray': pip install \"salience-audit[ray]\""
    assert err.value.exit_code == EXIT_MISSING_EXTRA


def test_demo_without_its_packages_exits_3_with_one_line(tmp_path, capsys, monkeypatch):
    from salience_audit.cli import main

    monkeypatch.setitem(sys.modules, "gan_face_generate", None)
    code = main(["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_MISSING_EXTRA
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert 'pip install "salience-audit[demo]"' in err and "--ignore-requires-python" in err
    assert not (tmp_path / "demo" / "runs").exists()


def test_a_broken_optional_package_is_not_reported_as_missing(monkeypatch):
    """Only the optional package itself missing names the extra; its own missing dependency re-raises."""
    import importlib

    def fake_import(name, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'wcwidth'", name="wcwidth")

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError):
        require_extra("wandb", "wandb", "--log-to wandb")


def _check_install_module():
    from bench_scripts import load_script

    return load_script(ROOT / "scripts" / "check-install", "check_install")


@pytest.mark.parametrize(("error", "unread"), [
    # what CI's pip printed when its downloads broke off or filled the disk: not checked, not "does not resolve"
    ("error: incomplete-download\n\u00d7 Download failed after 6 attempts because not enough bytes were received "
     "(391.1 MB/554.6 MB)\nnote: This is an issue with network connectivity, not pip.", True),
    ("ERROR: Could not install packages due to an OSError: (\"Connection broken: OSError(28, 'No space left on "
     "device')\", OSError(28, 'No space left on device'))", True),
    ("WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...)': /simple/torch/", True),
    # what pip prints when the set itself conflicts: a real failure
    ("ERROR: Cannot install torchcam==0.4.0 and numpy>=2 because these package versions have conflicting "
     "dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io/", False),
    ("ERROR: Could not find a version that satisfies the requirement torch>=99 (from versions: 2.13.0)\n"
     "ERROR: No matching distribution found for torch>=99", False),
])
def test_check_install_tells_an_unread_registry_from_a_set_that_does_not_resolve(error, unread):
    assert _check_install_module().registry_unread(error) is unread


def test_check_install_reports_a_conflict_as_does_not_resolve(monkeypatch, capsys):
    """A set that conflicts exits 1 even when another set could not be read (exit 75 would hide it)."""
    module = _check_install_module()
    monkeypatch.setattr(module, "registry_reachable", lambda python: True)
    errors = {"core": "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/",
              "full": "error: incomplete-download"}

    def fake_resolve(python, version, reqs, *flags):
        if "--no-deps" in flags:
            return {"gan-face-generate": "1.1.1"}, ""
        core = module.for_python(module.requirements(module.project(), ()), version)
        name = "core" if sorted(reqs) == sorted(core) else "full"
        return None, errors[name]

    monkeypatch.setattr(module, "resolve", fake_resolve)
    monkeypatch.setattr(sys, "argv", ["check-install", "--versions", "3.12"])
    assert module.main() == 1
    out = capsys.readouterr().out
    assert "Python 3.12 core: DOES NOT RESOLVE" in out
    assert "Python 3.12 full: NOT CHECKED (the registry could not be read)" in out
    errors["core"] = "error: incomplete-download"
    assert module.main() == module.EX_UNREACHABLE


@pytest.mark.slow
def test_dependency_set_resolves_on_every_declared_python():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check-install")], capture_output=True, text=True,
                          timeout=1500)
    if proc.returncode == 75:
        pytest.skip("the package registry could not be read, so scripts/check-install did not check every set:\n"
                    + proc.stdout[-2000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for version in ("3.11", "3.12", "3.13"):
        core = re.search(rf"^Python {version} core: .*numpy (\d+)\.", proc.stdout, re.M)
        assert core and int(core.group(1)) >= 2
        assert re.search(rf"^Python {version} full: .*torchcam", proc.stdout, re.M)
        assert f"Python {version} generator (--no-deps --ignore-requires-python): gan-face-generate 1." in proc.stdout
