"""Every ``python`` code block of README.md and docs/*.md runs as written.

The blocks of one file run in order in one namespace (a later block may use what an
earlier one defined), in a temporary working folder, on the CPU. A block that cannot run
in a test (it needs your data or a GPU) is preceded by the line
``<!-- not run: <reason> -->``; the test counts those, and a skipped block must say why.
Shell blocks (``bash``, ``console``, ``text``) are not run. docs/byo.md needs a prepared
workspace (checkpoints, map folders) and is run, shell commands included, by
tests/test_docs_byo.py.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN_RUNNER = {"byo.md": "tests/test_docs_byo.py"}
"""Pages whose blocks need a prepared workspace run in their own test (named here), not in this one."""
DOCS = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.name not in OWN_RUNNER]
FENCE = re.compile(r"(?P<marker><!-- not run: (?P<reason>[^>]*?) -->[ \t]*\n[ \t]*)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, skip reason or None) of every python block in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("code")) + 1, textwrap.dedent(m.group("code")), m.group("reason"))
            for m in FENCE.finditer(text)]


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for line, code, reason in python_blocks(path):
        if reason is not None:
            assert reason.strip(), f"{path.name}:{line}: a skipped block must say why"
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as err:  # pragma: no cover - the message is the point
            raise AssertionError(f"{path.relative_to(ROOT)}, block at line {line} fails: {err!r}") from err


def test_the_extractor_finds_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("a\n```python\nx = 1\n```\n<!-- not run: needs a GPU -->\n```python\ny = 2\n```\n```bash\nls\n```\n")
    blocks = python_blocks(doc)
    assert [(b[1], b[2]) for b in blocks] == [("x = 1\n", None), ("y = 2\n", "needs a GPU")]
    assert os.path.exists(doc)
