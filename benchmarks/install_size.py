"""Size of a core-only install (``pip install .``) against a full development venv, both without torch.

    python benchmarks/install_size.py --reference /work/main/.venv --work /tmp/core-venv

1. The *torch closure* is torch and every package it requires, extras followed (CUDA wheels, triton, sympy ...),
   read from the reference venv's metadata. Both sides are measured without it: torch is the
   same multi-GB download either way.
2. Reference size = the reference venv's files minus the closure's files (from their RECORDs).
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
import json, re
from importlib.metadata import distribution
from packaging.requirements import Requirement
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
seen, todo, files = set(), [("torch", ())], {}
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


def torch_closure(python: str) -> dict[str, list[str]]:
    """Distribution name -> its installed files, for torch and everything it requires."""
    out = subprocess.run([python, "-c", _CLOSURE_CODE], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


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
    args = parser.parse_args()
    ref = Path(args.reference)
    ref_python = str(ref / "bin" / "python")
    site = Path(subprocess.run([ref_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    closure = torch_closure(ref_python)
    closure_files = {str(Path(p)) for paths in closure.values() for p in paths}
    ref_total = tree_bytes(ref)
    ref_without = tree_bytes(ref, skip=closure_files)

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    venv, links = work / "venv", work / "torch-closure"
    base_python = subprocess.run([ref_python, "-c", "import sys; print(sys._base_executable)"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    core_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                     "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    link_closure(closure, site, links)
    (core_site / "torch-closure.pth").write_text(str(links) + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", args.project], check=True)
    core = tree_bytes(venv)
    result = {
        "reference_venv_bytes": ref_total,
        "reference_without_torch_bytes": ref_without,
        "core_venv_without_torch_bytes": core,
        "smaller_by": round(1 - core / ref_without, 3),
        "torch_closure": sorted(closure),
        "core_venv": str(venv),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
