"""Bad and unusual image files, fed through ``salience-audit audit`` (in process).

Every bad file must stop the audit before any model pass with a message naming the
manifest line, the file and the problem, or - with ``--on-bad-image skip`` - be listed in
``rejected.csv`` with its reason while the audit goes on. Unusual but valid files must work.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardening_fixtures import FAST, audit, flat_image, png16_rgb, rejected, rgb_image, rows, runs, write_csv
from salience_audit.audit import worker
from salience_audit.errors import EXIT_BAD_INPUT


@pytest.fixture(scope="module")
def run_pattern(tmp_path_factory: pytest.TempPathFactory) -> str:
    return runs(tmp_path_factory.mktemp("runs"), 2)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _bad_png_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[60:80] = b"\x00" * 20  # inside the IDAT chunk: checksum and zlib stream broken
    path.write_bytes(bytes(data))


# kind -> (how to make the bad file from a good one, words the problem must contain)
BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "truncated_png": (_truncate, "truncated"),
    "truncated_jpeg": (None, "truncated"),
    "corrupt_png": (_bad_png_crc, "corrupt"),
    "text_named_png": (lambda p: p.write_text("split,label,path\n"), "not an image file"),
    "pdf_named_png": (lambda p: p.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4), "not an image file"),
    "html_named_jpg": (lambda p: p.write_text("<html><body>404</body></html>"), "not an image file"),
}


def _dataset_with_bad(folder: Path, kind: str) -> tuple[Path, str]:
    """Four images, the third (manifest line 4) bad in the given way; returns (manifest, bad key)."""
    keys = [f"img{k}.png" for k in range(4)]
    if kind == "truncated_jpeg":
        keys[2] = "img2.jpg"
    if kind == "html_named_jpg":
        keys[2] = "img2.jpg"
    for k, key in enumerate(keys):
        rgb_image(folder / key, seed=k, size=48)
    make, _ = BAD_FILES[kind]
    if kind == "truncated_jpeg":
        _truncate(folder / keys[2], 0.6)
    else:
        make(folder / keys[2])
    manifest = write_csv(folder / "test.csv", [("test", "Real" if k % 2 else "Synthetic", key) for k, key in enumerate(keys)])
    return manifest, keys[2]


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_stops_with_file_line_and_problem(tmp_path, capsys, monkeypatch, run_pattern, kind):
    manifest, bad = _dataset_with_bad(tmp_path / "data", kind)
    loaded = []
    monkeypatch.setattr(worker.RunRef, "load", lambda self, device: loaded.append(self) or 1 / 0)
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert err.startswith("salience-audit: error: ")
    assert f"{manifest}:4: " in err  # the manifest line
    assert str(tmp_path / "data" / bad) in err  # the file
    assert BAD_FILES[kind][1] in err  # the problem
    assert "--on-bad-image skip" in err
    assert loaded == []  # stopped by the pre-flight, before any model was loaded
    assert not list((tmp_path / "out" / "results").glob("*.parquet"))


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_skipped_and_listed(tmp_path, capsys, run_pattern, kind):
    manifest, bad = _dataset_with_bad(tmp_path / "data", kind)
    out = tmp_path / "out"
    code, stdout, _ = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                            "--out", str(out), *FAST, "--on-bad-image", "skip")
    assert code == 0
    assert "rejected: 1 image," in stdout
    rej = rejected(out)
    assert rej[["path", "line"]].values.tolist() == [[bad, 4]]
    assert BAD_FILES[kind][1] in rej.loc[0, "reason"]
    df = rows(out)
    assert sorted(df["path"].unique()) == sorted({f"img{k}.png" for k in (0, 1, 3)})
    assert json.loads((out / "audit.json").read_text())["rejected"] == 1


def test_missing_file_is_a_manifest_error_with_line(tmp_path, capsys, run_pattern):
    rgb_image(tmp_path / "a.png")
    manifest = write_csv(tmp_path / "m.csv", [("test", "Real", "a.png"), ("test", "Real", "gone.png")])
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:3: path file not found: {tmp_path / 'gone.png'}" in err


def test_directory_named_like_an_image(tmp_path, capsys, run_pattern):
    rgb_image(tmp_path / "a.png")
    (tmp_path / "dir.png").mkdir()
    manifest = write_csv(tmp_path / "m.csv", [("test", "Real", "a.png"), ("test", "Real", "dir.png")])
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:3:" in err and "dir.png" in err


def test_preflight_runs_before_the_model_pass_with_a_progress_bar(tmp_path, capsys, monkeypatch, run_pattern):
    manifest, _ = _dataset_with_bad(tmp_path / "data", "empty")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars are drawn on terminals only
    flags = [f for f in FAST if f != "--quiet"]
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *flags, "--on-bad-image", "skip")
    assert code == 0
    assert "pre-flight" in err and "audit" in err
    assert err.index("pre-flight") < err.rindex("audit:")


def _unusual_images(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).convert("1").save(folder / "bilevel.png")
    pal = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P")
    pal.save(folder / "palette.png")
    pal.save(folder / "palette_transparent.png", transparency=3)
    pal.save(folder / "palette.gif")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 2), dtype=np.uint8), mode="LA").save(folder / "gray_alpha.png")
    Image.fromarray(rng.integers(0, 65536, (20, 20), dtype=np.uint16)).save(folder / "gray16.png")
    png16_rgb(folder / "rgb16.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=80)
    Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)).save(folder / "one_pixel.png")
    Image.fromarray(rng.integers(0, 256, (10, 70, 3), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "jpeg_named.png", format="JPEG")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "image.bmp")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "image.tif")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "image.webp")
    # very large (3 megapixels), far below the decompression-bomb limit: decoded and resized
    big = np.kron(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8), np.ones((100, 100, 1), dtype=np.uint8))
    Image.fromarray(big).save(folder / "large.png", compress_level=1)
    return sorted(p.name for p in folder.iterdir())


def test_unusual_but_valid_images_are_converted_and_audited(tmp_path, capsys, run_pattern):
    names = _unusual_images(tmp_path / "data")
    assert Image.open(tmp_path / "data" / "gray16.png").mode.startswith("I")
    manifest = write_csv(tmp_path / "data" / "m.csv", [("test", "Real", n) for n in names])
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(out), *FAST)
    assert code == 0, err
    df = rows(out)
    assert sorted(df["path"].unique()) == names
    assert np.isfinite(df["value"]).all()
    assert rejected(out).empty


def test_decompression_bomb_gives_a_clear_error(tmp_path, capsys, monkeypatch, run_pattern):
    # The limit is lowered so that a small file stands for a huge one; both PIL levels are covered:
    # above the limit (PIL warns) and above twice the limit (PIL refuses).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    rgb_image(tmp_path / "ok.png", size=20)  # 400 pixels
    rgb_image(tmp_path / "warn.png", size=40)  # 1600 pixels
    rgb_image(tmp_path / "bomb.png", size=64)  # 4096 pixels
    manifest = write_csv(tmp_path / "m.csv", [("test", "Real", n) for n in ("ok.png", "warn.png", "bomb.png")])
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:3: {tmp_path / 'warn.png'}: image is too large to decode safely" in err
    assert f"{manifest}:4: {tmp_path / 'bomb.png'}: image is too large to decode safely" in err
    code, _, _ = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                       "--out", str(tmp_path / "out2"), *FAST, "--on-bad-image", "skip")
    assert code == 0
    assert sorted(rejected(tmp_path / "out2")["path"]) == ["bomb.png", "warn.png"]


def test_every_image_bad_is_an_error_even_when_skipping(tmp_path, capsys, run_pattern):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_text("nope")
    manifest = write_csv(tmp_path / "m.csv", [("test", "Real", "a.png"), ("test", "Real", "b.png")])
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(tmp_path / "out"), *FAST, "--on-bad-image", "skip")
    assert code == EXIT_BAD_INPUT
    assert "every image was rejected" in err


def test_file_broken_after_the_preflight_is_caught_in_the_pass(tmp_path, capsys, monkeypatch, run_pattern):
    """A file that changes between the pre-flight and the pass (network storage) is still never dropped silently."""
    for k in range(3):
        rgb_image(tmp_path / f"i{k}.png", seed=k)
    manifest = write_csv(tmp_path / "m.csv", [("test", "Real", f"i{k}.png") for k in range(3)])
    from salience_audit.audit import pipeline

    real_preflight = pipeline.preflight

    def preflight_then_break(*args, **kwargs):
        result = real_preflight(*args, **kwargs)
        (tmp_path / "i1.png").write_bytes(b"")
        return result

    monkeypatch.setattr(pipeline, "preflight", preflight_then_break)
    out = tmp_path / "out"
    code, stdout, _ = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                            "--out", str(out), *FAST, "--on-bad-image", "skip")
    assert code == 0 and "rejected: 1 image," in stdout
    rej = rejected(out)
    assert rej[["path", "line"]].values.tolist() == [["i1.png", 3]]
    assert "empty" in rej.loc[0, "reason"]
    assert sorted(rows(out)["path"].unique()) == ["i0.png", "i2.png"]

    shutil.rmtree(out)
    rgb_image(tmp_path / "i1.png", seed=1)  # good again for the pre-flight, broken once it has passed
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest),
                         "--out", str(out), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {manifest}:3: {tmp_path / 'i1.png'}: empty image file (0 bytes)" in err


def test_dataset_of_one_image_with_every_default_measure(tmp_path, capsys, run_pattern):
    flat_image(tmp_path / "only.png", 120)
    manifest = write_csv(tmp_path / "m.csv", [("test", "Synthetic", "only.png")])
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest), "--out", str(out),
                         "--device", "cpu", "--quiet", "--no-report")
    assert code == 0, err
    df = rows(out)
    assert set(df["index"]) == {0}
    assert {"entropy", "noise_ssim", "equivariance", "stability_ssim", "degrade_ssim"} <= set(df["measure"])
    assert np.isfinite(df["value"]).all()
    assert json.loads((out / "audit.json").read_text())["rejected"] == 0
