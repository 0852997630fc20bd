"""Size of a core-only install (``pip install .``) against a full development venv, both without torch.

    python benchmarks/install_size.py --reference /work/main/.venv --work /tmp/core-venv

1. The *torch closure* is torch and every package it requires, extras followed (CUDA wheels, triton, sympy ...),
   read from the reference venv's metadata. Both sides are measured without it: torch is the
   same multi-GB download either way.
2. Reference size = the reference venv's files minus the closure's files (from their RECORDs);
   baseline size = the files of what ``make install`` installed at ``--baseline-commit`` (core +
   test + ray extras + generator, with everything they require) minus the closure - the venv of
   the issue, without what other work added to the shared venv since.
3. A fresh venv is made with the reference venv's Python; the closure is made visible to it
   through a ``.pth`` file naming a folder of symbolic links (nothing copied or downloaded), and
   ``pip install <project>`` installs the core. Its size counts real files only.

Sizes are apparent file sizes (the sum of ``st_size``, links not followed). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_CLOSURE_CODE = r"""
import json, re, sys
from importlib.metadata import distribution
from packaging.requirements import Requirement
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
roots = [Requirement(r) for r in json.loads(sys.argv[1])]
seen, todo, files = set(), [(r.name, tuple(r.extras)) for r in roots], {}
while todo:
    name, extras = todo.pop()
    key = (norm(name), tuple(sorted(extras)))
    if key in seen:
        continue
    seen.add(key)
    try:
        dist = distribution(name)
    except Exception:
        continue
    files[norm(name)] = [str(dist.locate_file(f)) for f in (dist.files or [])]
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            todo.append((req.name, tuple(req.extras)))
print(json.dumps(files))
"""


def closure(python: str, roots: list[str]) -> dict[str, list[str]]:
    """Distribution name -> its installed files, for ``roots`` and everything they require (extras followed)."""
    out = subprocess.run([python, "-c", _CLOSURE_CODE, json.dumps(roots)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def baseline_requirements(commit: str) -> list[str]:
    """What ``make install`` installed at ``commit``: the core and the test + ray extras, plus the generator."""
    import tomllib

    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:pyproject.toml"], check=True,
                          capture_output=True, text=True).stdout
    meta = tomllib.loads(text)["project"]
    extras = meta.get("optional-dependencies", {})
    reqs = [*meta["dependencies"], *extras.get("test", []), *extras.get("ray", []), "gan-face-generate"]
    return [r for r in reqs if "python_version < '3.11'" not in r]


def files_bytes(files: dict[str, list[str]], skip: set[str]) -> int:
    """Apparent size of the files of these distributions, leaving out those in ``skip``."""
    total = 0
    for name, paths in files.items():
        if name in skip:
            continue
        for path in paths:
            try:
                if not os.path.islink(path):
                    total += os.lstat(path).st_size
            except OSError:
                pass
    return total


def tree_bytes(folder: Path, skip: set[str] = frozenset()) -> int:
    """Apparent size of the regular files under ``folder`` (links not followed), minus paths in ``skip``."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if path in skip or os.path.islink(path):
                continue
            try:
                total += os.lstat(path).st_size
            except OSError:
                pass
    return total


def link_closure(files: dict[str, list[str]], site: Path, dest: Path) -> None:
    """Symbolic links in ``dest`` to the closure's top-level entries of ``site`` (packages, dist-infos, .so)."""
    dest.mkdir(parents=True, exist_ok=True)
    tops = set()
    for paths in files.values():
        for p in paths:
            rel = Path(p).resolve().relative_to(site.resolve()) if Path(p).resolve().is_relative_to(site.resolve()) else None
            if rel is not None and rel.parts and rel.parts[0] not in ("..", "bin"):
                tops.add(rel.parts[0])
    for top in sorted(tops):
        link = dest / top
        if not link.exists():
            link.symlink_to(site / top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=sys.prefix, help="the full venv to compare with (default: this one)")
    parser.add_argument("--work", default="/tmp/salience-audit-core-venv", help="where the core venv is made")
    parser.add_argument("--project", default=str(ROOT), help="the project to install (default: this checkout)")
    parser.add_argument("--baseline-commit", default="6aaee52",
                        help="commit whose `make install` set (core + test + ray + generator) is the baseline, "
                        "measured on the reference venv's files (default: %(default)s, before issue 13)")
    args = parser.parse_args()
    ref = Path(args.reference)
    ref_python = str(ref / "bin" / "python")
    site = Path(subprocess.run([ref_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    torch_files = closure(ref_python, ["torch"])
    closure_files = {str(Path(p)) for paths in torch_files.values() for p in paths}
    ref_total = tree_bytes(ref)
    ref_without = tree_bytes(ref, skip=closure_files)
    baseline = files_bytes(closure(ref_python, baseline_requirements(args.baseline_commit)), set(torch_files))

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    venv, links = work / "venv", work / "torch-closure"
    base_python = subprocess.run([ref_python, "-c", "import sys; print(sys._base_executable)"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    core_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                     "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    link_closure(torch_files, site, links)
    (core_site / "torch-closure.pth").write_text(str(links) + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", args.project], check=True)
    core = tree_bytes(venv)
    result = {
        "reference_venv_bytes": ref_total,
        "reference_without_torch_bytes": ref_without,
        "baseline_commit": args.baseline_commit,
        "baseline_install_without_torch_bytes": baseline,
        "core_venv_without_torch_bytes": core,
        "smaller_than_reference_by": round(1 - core / ref_without, 3),
        "smaller_than_baseline_by": round(1 - core / baseline, 3),
        "torch_closure": sorted(torch_files),
        "core_venv": str(venv),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
