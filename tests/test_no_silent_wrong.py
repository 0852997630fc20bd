"""Issue 14: inputs that used to give wrong numbers without a word, or a traceback.

Every case goes through the command line (``salience_audit.cli.main``) on tiny data (32 px
images, random ``small_cnn`` run folders, entropy only), and checks the exact message and
that nothing was computed from the wrong input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hardening_fixtures import FAST, NaNOnBright, audit, flat_image, make_run, rejected, rgb_image, rows, runs, write_csv
from salience_audit.cli import main
from salience_audit.data.images import load_image
from salience_audit.errors import EXIT_BAD_INPUT
from salience_audit.folders import AUDIT_MARKER


@pytest.fixture(scope="module")
def run_pattern(tmp_path_factory: pytest.TempPathFactory) -> str:
    return runs(tmp_path_factory.mktemp("runs"), 2)


def _data(folder: Path, n: int = 4) -> Path:
    for k in range(n):
        rgb_image(folder / f"i{k}.png", seed=k)
    return write_csv(folder / "m.csv", [("test", "Real" if k % 2 else "Synthetic", f"i{k}.png") for k in range(n)])


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return _data(tmp_path / "data")


def _args(pattern: str, manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--group", f"g={pattern}", "--manifest", str(manifest), "--out", str(out), *FAST, *extra]


def _score(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- groups and runs


def test_a_group_name_given_twice_is_refused(tmp_path, capsys, data, run_pattern):
    a, b = str(tmp_path / "A-*"), str(tmp_path / "B-*")
    code, _, err = audit(capsys, "--group", f"xent={a}", "--group", f"xent={b}", "--manifest", str(data),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: --group 'xent' is given twice ('{a}' and '{b}')" in err
    assert not (tmp_path / "out").exists()


def test_a_run_in_two_groups_is_refused_naming_both(tmp_path, capsys, data, run_pattern):
    run0 = run_pattern.replace("*", "0")
    code, _, err = audit(capsys, "--group", f"a={run_pattern}", "--group", f"b={run0}", "--manifest", str(data),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"run folder {run0} is in two groups: 'a' ('{run_pattern}') and 'b' ('{run0}')" in err
    assert not (tmp_path / "out").exists()


def _swapped_run(source: Path, target: Path, names: list[str]) -> Path:
    """A copy of a run whose two outputs are stored in the other order, with ``class_names`` saying so."""
    target.mkdir(parents=True)
    state = torch.load(source / "model.pt", weights_only=True)
    state["classifier.weight"] = state["classifier.weight"].flip(0)
    state["classifier.bias"] = state["classifier.bias"].flip(0)
    torch.save(state, target / "model.pt")
    meta = json.loads((source / "run.json").read_text())
    meta["class_names"] = names
    (target / "run.json").write_text(json.dumps(meta))
    return target


def test_class_names_in_run_json_are_honoured(tmp_path, capsys, data):
    plain = [make_run(tmp_path / "plain" / f"run-{k}", seed=k) for k in range(2)]
    for run in plain:
        _swapped_run(run, tmp_path / "swapped" / run.name, ["Synthetic", "Real"])
    measures = ["--measures", "entropy,stability"]
    assert audit(capsys, *_args(str(tmp_path / "plain" / "run-*"), data, tmp_path / "o1", *measures))[0] == 0
    assert audit(capsys, *_args(str(tmp_path / "swapped" / "run-*"), data, tmp_path / "o2", *measures))[0] == 0
    pd.testing.assert_frame_equal(rows(tmp_path / "o1"), rows(tmp_path / "o2"))
    # score reads the probability of the output named Synthetic, too
    for name in ("plain", "swapped"):
        assert _score(capsys, "--runs", str(tmp_path / name / "run-*"), "--manifest", str(data),
                      "--out", str(tmp_path / f"s-{name}"), "--no-progress")[0] == 0
    s1 = pd.read_csv(tmp_path / "s-plain" / "scores.csv")
    s2 = pd.read_csv(tmp_path / "s-swapped" / "scores.csv")
    np.testing.assert_allclose(s1["score"], s2["score"], rtol=1e-6)
    assert (s1["pred"] == s2["pred"]).all()


def test_class_names_that_do_not_name_synthetic_are_refused(tmp_path, capsys, data):
    run = _swapped_run(make_run(tmp_path / "src" / "r-0"), tmp_path / "r-0", ["cat", "dog"])
    code, _, err = audit(capsys, *_args(str(tmp_path / "r-*"), data, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{run / 'run.json'}: class_names ['cat', 'dog'] do not say which output is Synthetic" in err


def _unfinished(run: Path) -> Path:
    meta = json.loads((run / "run.json").read_text())
    meta["finished"] = False
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_unfinished_run_is_refused_or_audited_and_marked(tmp_path, capsys, data):
    make_run(tmp_path / "r-0")
    run1 = _unfinished(make_run(tmp_path / "r-1", seed=1))
    code, _, err = audit(capsys, *_args(str(tmp_path / "r-*"), data, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{run1 / 'run.json'}: this training run did not finish (run.json says finished: false" in err
    assert "--allow-unfinished" in err
    out = tmp_path / "out2"
    code, _, err = audit(capsys, *_args(str(tmp_path / "r-*"), data, out, "--allow-unfinished"))
    assert code == 0, err
    runs_meta = json.loads((out / "audit.json").read_text())["runs"]
    assert runs_meta["r-1"]["finished"] is False and runs_meta["r-0"]["finished"] is True
    assert main(["report", str(out)]) == 0
    html = (out / "report" / "index.html").read_text()
    assert "Unfinished training run(s), audited on request (--allow-unfinished): r-1." in html


# ----------------------------------------------------------------------------- manifests and splits


def test_train_rows_are_skipped_with_a_note_unless_asked(tmp_path, capsys, run_pattern):
    for k in range(4):
        rgb_image(tmp_path / "d" / f"i{k}.png", seed=k)
    manifest = write_csv(tmp_path / "d" / "m.csv", [("train", "Real", "i0.png"), ("test", "Synthetic", "i1.png"),
                                                     ("audit", "Real", "i2.png"), ("train", "Synthetic", "i3.png")])
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "o1"))
    assert code == 0, err
    assert (f"salience-audit: warning: {manifest}: 2 row(s) of split(s) train left out of the audit (audited splits: "
            "test, audit; pass --splits test,audit,train to include them)") in err
    assert sorted(rows(tmp_path / "o1")["path"].unique()) == ["i1.png", "i2.png"]
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "o2", "--splits", "test,audit,train"))
    assert code == 0 and "left out" not in err
    assert sorted(rows(tmp_path / "o2")["path"].unique()) == ["i0.png", "i1.png", "i2.png", "i3.png"]


def test_fifo_and_device_manifests_are_refused(tmp_path, capsys, run_pattern):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    code, _, err = audit(capsys, *_args(run_pattern, fifo, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT and time.monotonic() - t0 < 30
    assert f"{fifo}: not a regular file (a pipe, device or socket)" in err
    code, _, err = audit(capsys, *_args(run_pattern, Path("/dev/zero"), tmp_path / "out"))
    assert code == EXIT_BAD_INPUT and "/dev/zero: not a regular file" in err


def test_many_manifest_problems_do_not_point_at_a_python_attribute(tmp_path, capsys, run_pattern):
    manifest = write_csv(tmp_path / "m.csv", [("test", "maybe", f"x{k}.png") for k in range(60)])
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert ".problems" not in err and "more problem(s) not listed here" in err


def test_out_inside_a_class_folder_dataset_is_not_read_as_images(tmp_path, capsys, run_pattern):
    for k in range(2):
        rgb_image(tmp_path / "ds" / "Real" / f"r{k}.png", seed=k)
        rgb_image(tmp_path / "ds" / "Synthetic" / f"s{k}.png", seed=10 + k)
    out = tmp_path / "ds" / "Real" / "audit-out"
    assert audit(capsys, *_args(run_pattern, tmp_path / "ds", out))[0] == 0
    rgb_image(out / "report" / "figure.png", seed=99)  # what a report figure looks like to a folder reader
    code, _, err = audit(capsys, *_args(run_pattern, tmp_path / "ds", tmp_path / "again"))
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "audit.json").read_text())["datasets"]["ds"]["n"] == 4
    assert rows(tmp_path / "again").equals(rows(out))


# ----------------------------------------------------------------------------- the output folder


def test_out_that_is_not_an_audit_folder_is_refused(tmp_path, capsys, data, run_pattern):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.json").write_text('{"mine": true}')
    (out / ".draft.tmp").write_text("my notes")
    code, _, err = audit(capsys, *_args(run_pattern, data, out))
    assert code == EXIT_BAD_INPUT
    assert f"{out}: the output folder is not empty and is not an audit folder of this tool" in err
    assert "pass --force" in err
    code, _, err = audit(capsys, *_args(run_pattern, data, out, "--force"))
    assert code == EXIT_BAD_INPUT
    assert f"{out}: --force: the audit would overwrite summary.json, which this tool did not write" in err
    assert sorted(p.name for p in out.iterdir()) == [".draft.tmp", "summary.json"]
    assert (out / "summary.json").read_text() == '{"mine": true}' and (out / ".draft.tmp").read_text() == "my notes"


def test_force_writes_next_to_other_files_and_never_touches_them(tmp_path, capsys, data, run_pattern):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / ".draft.tmp").write_text("my notes")
    code, _, err = audit(capsys, *_args(run_pattern, data, out, "--force"))
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "keep me" and (out / ".draft.tmp").read_text() == "my notes"
    assert (out / AUDIT_MARKER).is_file()
    code, _, err = audit(capsys, *_args(run_pattern, data, out))  # now an audit folder: resumes without --force
    assert code == 0, err
    assert (out / ".draft.tmp").read_text() == "my notes"


def test_force_is_refused_in_a_config_file(tmp_path, capsys, data, run_pattern):
    config = tmp_path / "c.yaml"
    config.write_text("force: true\n")
    code, _, err = audit(capsys, "--config", str(config), *_args(run_pattern, data, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{config}: force: allowed on the command line only (--force), not in a config file" in err


# ----------------------------------------------------------------------------- values of flags and keys


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--deletion-steps", "0"], "--deletion-steps: input should be greater than or equal to 1, got 0 (int)"),
        (["--num-workers", "-1"], "--num-workers: input should be greater than or equal to 0, got -1 (int)"),
        (["--threshold", "nan"], "--threshold: expected a finite number, got nan"),
        (["--threshold", "1.5"], "--threshold: input should be less than or equal to 1, got 1.5 (float)"),
        (["--method", "bogus"], "--method: unknown salience method 'bogus'; known: cam, gradcam"),
        (["--measures", "entropy,bogus"], "--measures: unknown measure(s) 'bogus'; known: entropy"),
        (["--splits", "dev"], "--splits[0]: input should be 'test', 'audit' or 'train', got 'dev' (str)"),
    ],
)
def test_bad_flag_values_are_refused_before_anything_is_written(tmp_path, capsys, data, run_pattern, flags, message):
    code, _, err = audit(capsys, *_args(run_pattern, data, tmp_path / "out", *flags))
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {message}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("batch_size: abc\n", "batch_size: expected a whole number >= 1 or 'auto', got 'abc' (str)"),
        ("measures: 5\n", "measures: input should be a list, got 5 (int)"),
        ("groups: [a, b]\n", "groups: expected a mapping of group name -> run-folder pattern"),
        ('threshold: "0.7"\n', "threshold: expected a number, got '0.7' (str)"),
        ("deletion_steps: 2.5\n", "deletion_steps: input should be a valid integer, got 2.5 (float)"),
        ("amp: yes please\n", "amp: input should be a valid boolean, got 'yes please' (str)"),
        ("seed: 1\nseed: 2\n", "key 'seed' is given twice (lines 1 and 2)"),
    ],
)
def test_bad_config_values_are_refused(tmp_path, capsys, data, run_pattern, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    code, _, err = audit(capsys, "--config", str(config), *_args(run_pattern, data, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert message in err and str(config) in err
    assert not (tmp_path / "out").exists()


def test_manifests_as_one_string_in_a_config_is_one_manifest(tmp_path, capsys, data, run_pattern):
    config = tmp_path / "c.yaml"
    config.write_text(f"manifests: {data}\ngroups:\n  g: '{run_pattern}'\n")
    code, _, err = audit(capsys, "--config", str(config), "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, err
    assert sorted(rows(tmp_path / "out")["path"].unique()) == [f"i{k}.png" for k in range(4)]


def test_a_fixed_method_reruns_in_the_same_folder(tmp_path, capsys, data, run_pattern):
    out = tmp_path / "out"
    assert audit(capsys, *_args(run_pattern, data, out, "--method", "gradcam++"))[0] == EXIT_BAD_INPUT
    assert not (out / "plan.json").exists()
    code, _, err = audit(capsys, *_args(run_pattern, data, out, "--method", "gradcampp"))
    assert code == 0, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threshold", "1.5"], "--threshold: input should be less than or equal to 1, got 1.5 (float)"),
        (["--threshold", "nan"], "--threshold: expected a finite number, got nan"),
        (["--batch-size", "0"], "--batch-size: input should be greater than or equal to 1, got 0 (int)"),
    ],
)
def test_score_refuses_meaningless_values(tmp_path, capsys, data, run_pattern, flags, message):
    code, _, err = _score(capsys, "--runs", run_pattern, "--manifest", str(data), "--out", str(tmp_path / "s"),
                          "--no-progress", *flags)
    assert code == EXIT_BAD_INPUT and f"salience-audit: error: {message}" in err
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- images


def _float_tiff(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.float32)).save(path)
    return path


def test_nan_pixels_blame_the_image_in_audit_and_score(tmp_path, capsys, run_pattern):
    for k in range(3):
        rgb_image(tmp_path / "d" / f"i{k}.png", seed=k)
    values = np.full((32, 32), 0.5)
    values[3, 4] = np.nan
    bad = _float_tiff(tmp_path / "d" / "nan.tif", values)
    manifest = write_csv(tmp_path / "d" / "m.csv", [("test", "Real", f"i{k}.png") for k in range(3)]
                         + [("test", "Synthetic", "nan.tif")])
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:5: {bad}: float image holds 1 NaN or infinite pixel value(s); the image is unusable" in err
    assert "run '" not in err  # not blamed on a run
    code, stdout, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "out", "--on-bad-image", "skip"))
    assert code == 0 and "rejected: 1 image," in stdout
    assert rejected(tmp_path / "out")["path"].tolist() == ["nan.tif"]
    code, _, err = _score(capsys, "--runs", run_pattern, "--manifest", str(manifest), "--out", str(tmp_path / "s"),
                          "--no-progress")
    assert code == EXIT_BAD_INPUT and f"{bad}: float image holds 1 NaN or infinite pixel value(s)" in err


def test_float_image_outside_unit_range_is_refused(tmp_path, capsys, run_pattern):
    rgb_image(tmp_path / "d" / "ok.png")
    bad = _float_tiff(tmp_path / "d" / "hdr.tif", np.linspace(0, 4, 32 * 32).reshape(32, 32))
    manifest = write_csv(tmp_path / "d" / "m.csv", [("test", "Real", "ok.png"), ("test", "Synthetic", "hdr.tif")])
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{bad}: float image with values in [0, 4], outside [0, 1]; rescale it to [0, 1]" in err


def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels[:, :8] = 255  # asymmetric: a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    stored = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0  # pixels as stored
    shown = np.rot90(stored, k=-1)  # orientation 6: the viewer turns the stored pixels 90 degrees clockwise
    loaded = load_image(path, 32).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(loaded, shown, atol=1e-6)
    assert not np.allclose(loaded, stored)


def test_exif_rotated_image_audits_like_the_upright_one(tmp_path, capsys, run_pattern):
    rng = np.random.default_rng(1)
    upright = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    upright[:6] = 0
    (tmp_path / "a").mkdir()
    Image.fromarray(upright).save(tmp_path / "a" / "x.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display": store the pixels turned clockwise
    (tmp_path / "b").mkdir()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=-1))).save(tmp_path / "b" / "x.png", exif=exif.tobytes())
    for name in ("a", "b"):
        write_csv(tmp_path / name / "m.csv", [("test", "Real", "x.png")])
        assert audit(capsys, *_args(run_pattern, tmp_path / name / "m.csv", tmp_path / f"o{name}"))[0] == 0
    a, b = rows(tmp_path / "oa"), rows(tmp_path / "ob")
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-5)


@pytest.mark.parametrize("kind", ["gif", "tiff"])
def test_multi_frame_images_are_refused(tmp_path, capsys, run_pattern, kind):
    rgb_image(tmp_path / "d" / "ok.png")
    frames = [Image.fromarray(np.full((32, 32, 3), v, dtype=np.uint8)) for v in (10, 200)]
    bad = tmp_path / "d" / f"anim.{kind}"
    frames[0].save(bad, save_all=True, append_images=frames[1:])
    manifest = write_csv(tmp_path / "d" / "m.csv", [("test", "Real", "ok.png"), ("test", "Synthetic", bad.name)])
    code, _, err = audit(capsys, *_args(run_pattern, manifest, tmp_path / "out"))
    assert code == EXIT_BAD_INPUT
    assert f"{bad}: multi-frame image (2 frames: an animated {kind.upper()} or a multi-page file)" in err


def test_one_image_rejected_by_two_runs_counts_once(tmp_path, capsys):
    for k in range(4):
        flat_image(tmp_path / "d" / f"i{k}.png", 240 if k == 2 else 20 + 10 * k)
    manifest = write_csv(tmp_path / "d" / "m.csv", [("test", "Real", f"i{k}.png") for k in range(4)])
    for group in ("a", "b"):
        make_run(tmp_path / f"{group}-0", module=NaNOnBright())
        make_run(tmp_path / f"{group}-1", seed=1)
    code, stdout, err = audit(capsys, "--group", f"a={tmp_path / 'a-*'}", "--group", f"b={tmp_path / 'b-*'}",
                              "--manifest", str(manifest), "--out", str(tmp_path / "out"), *FAST, "--trust-pickle",
                              "--on-bad-image", "skip")
    assert code == 0, err
    assert "rejected: 1 image, listed in" in stdout
    assert len(rejected(tmp_path / "out")) == 2  # one line per reason (each group)
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["rejected"] == 1


# ----------------------------------------------------------------------------- signals


def test_sigterm_is_handled_like_ctrl_c(tmp_path, run_pattern):
    data = _data(tmp_path / "data", n=24)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "salience_audit.cli", "audit", *_args(run_pattern, data, out, "--shard-size", "2",
                                                                        "--batch-size", "2")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "results").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the audit finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert "salience-audit: terminated (SIGTERM); finished shards are kept, run the same command to resume" in err
    assert "Traceback" not in err
