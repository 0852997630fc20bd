"""Issue 14: resume reuses a shard only when everything that made it is unchanged.

A base audit (6 images with human maps, shard size 2, one group of two random
``small_cnn`` runs, entropy + noise + human maps) is copied for each case; one input is
changed (an image's bytes, a label, a run's weights, a human map, a setting) and the same
command runs again. Recomputed shard files are new files (``os.replace`` of a fresh file:
a new inode), kept ones are untouched, so the test knows exactly which shards were
recomputed. The resumed rows must equal those of a fresh audit of the changed inputs.
Also: a foreign, stale or missing shard at ``report`` time, and two audits on one folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hardening_fixtures import audit, make_run, rgb_image, rows, write_csv
from salience_audit.cli import main
from salience_audit.errors import EXIT_BAD_INPUT

N = 6
SHARD = 2
BASE_FLAGS = ["--device", "cpu", "--quiet", "--no-report", "--shard-size", str(SHARD), "--batch-size", str(SHARD),
              "--measures", "entropy,noise,human", "--gallery-size", "1"]


def _map(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(100 + seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
    return path


def _build(root: Path) -> None:
    lines = []
    for k in range(N):
        rgb_image(root / "data" / "images" / f"img{k}.png", seed=k)
        _map(root / "data" / "maps" / f"img{k}.png", k)
        lines.append(("test", "Real" if k % 2 else "Synthetic", f"images/img{k}.png", f"maps/img{k}.png"))
    write_csv(root / "data" / "m.csv", lines, header=("split", "label", "path", "human_map"))
    for k in range(2):
        make_run(root / "runs" / f"run-{k}", seed=k)


def _cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--group", f"g={root / 'runs' / 'run-*'}", "--manifest", str(root / "data" / "m.csv"), "--out", str(out),
            *BASE_FLAGS, *extra]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fp-base")
    _build(root)
    assert main(["audit", *_cmd(root, root / "out")]) == 0
    return root


def _inodes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (out / "results").glob("*.parquet")}


def _recomputed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    assert set(before) == set(after)
    return {name for name in after if after[name] != before[name]}


def _names(files: set[str], group: str, images: set[int]) -> set[str]:
    """The shard files of ``group`` (g: the model group; human: the human maps) holding any of ``images``."""
    ranges = {f"{(k // SHARD) * SHARD:09d}-{min((k // SHARD) * SHARD + SHARD, N):09d}" for k in images}
    return {f for f in files if f.startswith(f"{group}-") and any(r in f for r in ranges)}


def _case(base: Path, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "case"
    shutil.copytree(base, root)  # a copied dataset, runs and audit folder: every shard stays valid
    return root, _inodes(root / "out")


def _resume_and_check(capsys, root: Path, before: dict[str, int], *extra: str) -> tuple[set[str], str]:
    code, _, err = audit(capsys, *_cmd(root, root / "out", *extra))
    assert code == 0, err
    changed = _recomputed(before, _inodes(root / "out"))
    code, _, err2 = audit(capsys, *_cmd(root, root / "fresh", *extra))
    assert code == 0, err2
    pd.testing.assert_frame_equal(rows(root / "out"), rows(root / "fresh"))
    return changed, err


def test_unchanged_inputs_and_a_copied_folder_reuse_every_shard(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    changed, err = _resume_and_check(capsys, root, before)
    assert changed == set() and "stale" not in err


def test_changed_image_bytes_recompute_only_its_model_shard(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    rgb_image(root / "data" / "images" / "img3.png", seed=77)
    changed, err = _resume_and_check(capsys, root, before)
    assert changed == _names(set(before), "g", {3})
    assert "1 of 6 finished shard(s) were stale and are recomputed: image bytes changed (1 image: images/img3.png)" in err


def test_changed_label_recomputes_its_model_and_human_shards(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    manifest = root / "data" / "m.csv"
    text = manifest.read_text().replace("test,Synthetic,images/img0.png", "test,Real,images/img0.png")
    manifest.write_text(text)
    changed, err = _resume_and_check(capsys, root, before)
    assert changed == _names(set(before), "g", {0}) | _names(set(before), "human", {0})
    assert "label changed (1 image: images/img0.png)" in err


def test_changed_weights_recompute_every_model_shard_only(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    state = torch.load(root / "runs" / "run-1" / "model.pt", weights_only=True)
    state["classifier.bias"] += 0.5
    torch.save(state, root / "runs" / "run-1" / "model.pt")
    changed, err = _resume_and_check(capsys, root, before)
    assert changed == _names(set(before), "g", set(range(N)))
    assert "run weights or metadata changed (run-1) (3 shards)" in err


def test_changed_human_map_recomputes_its_model_and_human_shards(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    _map(root / "data" / "maps" / "img5.png", seed=55)
    changed, err = _resume_and_check(capsys, root, before)
    assert changed == _names(set(before), "g", {5}) | _names(set(before), "human", {5})
    assert "human map changed (1 image: images/img5.png)" in err


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--seed", "3"], "seed 0 -> 3"),
        (["--target", "label"], "target 'predicted' -> 'label'"),
        (["--method", "gradcampp"], "method 'gradcam' -> 'gradcampp'"),
        (["--threshold", "0.3"], "threshold 0.5 -> 0.3"),
        (["--deletion-steps", "4"], "deletion_steps 10 -> 4"),
        (["--batch-size", "1"], "batch_size 2 -> 1"),
    ],
)
def test_each_measure_parameter_recomputes_every_model_shard(base, tmp_path, capsys, flags, reason):
    root, before = _case(base, tmp_path)
    changed, err = _resume_and_check(capsys, root, before, *flags)
    assert changed == _names(set(before), "g", set(range(N)))  # the human maps' shards do not depend on them
    assert reason in err


def test_noise_levels_in_the_config(base, tmp_path, capsys):
    root, before = _case(base, tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("noise_levels: [0.0, 0.2]\n")
    changed, err = _resume_and_check(capsys, root, before, "--config", str(config))
    assert changed == _names(set(before), "g", set(range(N)))
    assert "noise_levels" in err


# ----------------------------------------------------------------------------- report: foreign, stale, missing


def _report(capsys, out: Path) -> tuple[int, str]:
    code = main(["report", str(out)])
    return code, capsys.readouterr().err


def test_report_refuses_a_foreign_shard_naming_it(base, tmp_path, capsys):
    root, _ = _case(base, tmp_path)
    other = tmp_path / "other"
    assert audit(capsys, *_cmd(root, other))[0] == 0  # the same inputs, another audit folder (another audit id)
    shard = sorted((other / "results").glob("g-*.parquet"))[0]
    dropped = root / "out" / "results" / "zz-from-elsewhere.parquet"
    shutil.copy(shard, dropped)
    code, err = _report(capsys, root / "out")
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {dropped}: this result shard is not part of the audit (audit.json does not list it)" in err
    dropped.unlink()
    target = root / "out" / "results" / shard.name
    shutil.copy(shard, target)  # same name, same rows, but written by the other audit
    code, err = _report(capsys, root / "out")
    assert code == EXIT_BAD_INPUT
    assert f"{target}: this result shard belongs to another audit (audit id " in err


def test_report_refuses_a_hand_made_shard_and_warns_on_missing_ones(base, tmp_path, capsys):
    root, _ = _case(base, tmp_path)
    results = root / "out" / "results"
    victim = sorted(results.glob("g-*.parquet"))[0]
    pd.read_parquet(victim).to_parquet(victim, index=False)  # same rows, no fingerprint
    code, err = _report(capsys, root / "out")
    assert code == EXIT_BAD_INPUT and f"{victim}: this result shard belongs to another audit (audit id none" in err
    victim.unlink()
    code, err = _report(capsys, root / "out")
    assert code == 0, err
    assert f"salience-audit: warning: incomplete: {results} holds 10 of 12 images (image x group slots); " in err
    assert "1 shard file(s) missing" in err
    html = (root / "out" / "report" / "index.html").read_text()
    assert "Incomplete results: they hold 10 of 12 images (image x group slots); 1 shard file(s) are missing." in html


# ----------------------------------------------------------------------------- one writer


def test_a_second_audit_on_the_same_folder_stops_at_once_naming_the_first(base, tmp_path, capsys):
    root = tmp_path / "c"
    root.mkdir()
    lines = []
    for k in range(40):
        rgb_image(root / "data" / f"i{k}.png", seed=k)
        lines.append(("test", "Real" if k % 2 else "Synthetic", f"i{k}.png"))
    write_csv(root / "data" / "m.csv", lines)
    for k in range(2):
        make_run(root / "runs" / f"run-{k}", seed=k)
    args = ["--group", f"g={root / 'runs' / 'run-*'}", "--manifest", str(root / "data" / "m.csv"),
            "--device", "cpu", "--quiet", "--no-report", "--shard-size", "2", "--batch-size", "2",
            "--measures", "entropy,noise"]
    out = root / "out"
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"}
    first = subprocess.Popen([sys.executable, "-m", "salience_audit.cli", "audit", *args, "--out", str(out)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".salience-audit.owner").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        code = main(["audit", *args, "--out", str(out)])
        elapsed = time.monotonic() - t0
        err = capsys.readouterr().err
        still_running = first.poll() is None
    finally:
        _, first_err = first.communicate(timeout=300)
    assert still_running, "the first audit ended before the second one started; make the dataset larger"
    assert code == EXIT_BAD_INPUT and elapsed < 2.0, (code, elapsed, err)
    assert f"salience-audit: error: {out}: another salience-audit is writing to this folder (PID {first.pid} on " in err
    assert first.returncode == 0, first_err
    assert main(["audit", *args, "--out", str(root / "single")]) == 0
    pd.testing.assert_frame_equal(rows(out), rows(root / "single"))
    assert json.loads((out / "audit.json").read_text())["datasets"]["m"]["n"] == 40
