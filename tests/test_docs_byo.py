"""Every code block of docs/byo.md runs, in order, in a small workspace.

``python`` blocks are executed (blocks starting ``# file: NAME`` are written to NAME
instead), ``yaml`` blocks starting ``# file: NAME`` are written, and every
``salience-audit ...`` command of an ``sh`` block runs through the CLI and must succeed.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from byo_fixtures import cyborg_style_checkpoint, image_tree
from PIL import Image

from salience_audit.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "byo.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

pytest.importorskip("timm")
pytest.importorskip("captum")
pytest.importorskip("pytorch_grad_cam")


def _commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.strip().startswith("salience-audit ")]


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = image_tree(tmp_path / "data", ("real", "fake"), per_class=2, size=48)
    for k in (1, 2):
        cyborg_style_checkpoint("densenet121", tmp_path / "weights" / f"densenet_cyborg_{k}" / "Logs" /
                                "final_model.pth", seed=k)
        rng = np.random.default_rng(k)
        for image in data.rglob("*.png"):
            cam = tmp_path / "cams" / "gradcam" / "faces" / f"densenet_xent_{k}" / "native" / image.relative_to(data)
            cam.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (7, 7), dtype=np.uint8), "L").save(cam)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_every_block_of_byo_md_runs(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert {lang for lang, _ in blocks} == {"sh", "python", "yaml"}
    ran = 0
    for lang, text in blocks:
        first = text.splitlines()[0]
        if first.startswith("# file: "):
            (workspace / first[len("# file: "):].strip()).write_text(text, encoding="utf-8")
            continue
        if lang == "python":
            exec(compile(text, f"{DOC.name} block", "exec"), {"__name__": "__byo_doc__"})  # noqa: S102
        elif lang == "sh":
            for argv in _commands(text):
                code = main([*argv, "--quiet", "--device", "cpu"])
                out, err = capsys.readouterr()
                assert code == 0, f"{' '.join(argv)}\n{err}"
                ran += 1
        sys.modules.pop("mynet", None)
    assert ran == 7
    assert "detection, noise are skipped" in DOC.read_text(encoding="utf-8")
