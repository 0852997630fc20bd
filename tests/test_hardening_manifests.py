"""Bad manifests and human maps, fed through ``salience-audit audit`` (in process).

Manifest problems are all reported together, each as ``manifest:line: problem``, before
any image is opened. Human maps are checked by the pre-flight like images.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hardening_fixtures import FAST, audit, rejected, rgb_image, rows, runs, write_csv
from salience_audit.errors import EXIT_BAD_INPUT


@pytest.fixture(scope="module")
def run_pattern(tmp_path_factory: pytest.TempPathFactory) -> str:
    return runs(tmp_path_factory.mktemp("runs"), 2)


@pytest.fixture()
def images(tmp_path):
    for k in range(3):
        rgb_image(tmp_path / "faces" / f"f{k}.png", seed=k)
    return tmp_path / "faces"


def _audit(capsys, run_pattern, tmp_path, *args):
    return audit(capsys, "--group", f"g={run_pattern}", *args, "--out", str(tmp_path / "out"), *FAST)


# ----------------------------------------------------------------------------- original-study CSV


def test_study_csv_problems_listed_together_with_lines(tmp_path, capsys, run_pattern, images):
    rgb_image(tmp_path / "secret.png")  # exists, but outside the root
    manifest = write_csv(tmp_path / "progan.csv", [
        ("test", "Real", "/f0.png"),
        ("test", "Real", "/f1.png", "extra"),  # line 2: 4 columns
        ("test", "Fake", "/f1.png"),  # line 3: unknown label
        ("validation", "Real", "/f2.png"),  # line 4: unknown split
        ("test", "Real", "/f0.png"),  # line 5: duplicate of line 1
        ("test", "Real", "/../secret.png"),  # line 6: escapes the root
        ("test", "Synthetic"),  # line 7: 2 columns
    ], header=None)
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest), "--root", str(images))
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {manifest}:2: expected 3 columns (split,label,path), found 4" in err
    assert "(6 problems in all)" in err
    for expected in (
        f"{manifest}:3: unknown label 'Fake' (expected one of Real, Synthetic)",
        f"{manifest}:4: unknown split 'validation'",
        f"{manifest}:5: duplicate path '/f0.png' (first listed on line 1)",
        f"{manifest}:6: path '/../secret.png' escapes the dataset root {images}",
        f"{manifest}:7: expected 3 columns (split,label,path), found 2",
    ):
        assert expected in err


def test_study_csv_needs_a_root(tmp_path, capsys, run_pattern, images):
    manifest = write_csv(tmp_path / "progan.csv", [("test", "Real", "/f0.png")], header=None)
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:1: this is an original-study manifest" in err and "root folder is required" in err


@pytest.mark.parametrize("header", [None, ("split", "label", "path")], ids=["study", "header"])
def test_windows_line_endings_and_byte_order_mark_are_accepted(tmp_path, capsys, run_pattern, images, header):
    lines = [("test", "Real", "/f0.png" if header is None else "f0.png"),
             ("test", "Synthetic", "/f1.png" if header is None else "f1.png")]
    plain = write_csv(images / "plain.csv", lines, header=header)
    windows = write_csv(images / "windows.csv", lines, header=header, newline="\r\n", bom=True)
    assert windows.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in windows.read_bytes()
    root = ["--root", str(images)]
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", f"d={plain}", *root,
                         "--out", str(tmp_path / "a"), *FAST)
    assert code == 0, err
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", f"d={windows}", *root,
                         "--out", str(tmp_path / "b"), *FAST)
    assert code == 0, err
    assert rows(tmp_path / "a").equals(rows(tmp_path / "b"))


# ----------------------------------------------------------------------------- header CSV


def test_header_csv_problems(tmp_path, capsys, run_pattern, images):
    rgb_image(tmp_path / "outside.png")
    manifest = write_csv(images / "m.csv", [
        ("test", "Real", "f0.png"),
        ("test", "Real"),  # line 3
        ("test", "maybe", "f1.png"),  # line 4
        ("test", "Real", "./f0.png"),  # line 5: the same file as line 2
        ("test", "Real", "../outside.png"),  # line 6
        ("test", "Real", "sub/../../outside.png"),  # line 7
    ])
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    for expected in (
        f"{manifest}:3: expected 3 columns (split,label,path), found 2",
        f"{manifest}:4: unknown label 'maybe'",
        f"{manifest}:5: duplicate path './f0.png' (first listed on line 2)",
        f"{manifest}:6: path '../outside.png' escapes the dataset root",
        f"{manifest}:7: path 'sub/../../outside.png' escapes the dataset root",
    ):
        assert expected in err


def test_unknown_column(tmp_path, capsys, run_pattern, images):
    manifest = write_csv(images / "m.csv", [("test", "Real", "f0.png")], header=("split", "label", "file"))
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:1: unknown column(s) 'file'" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty manifest"),
        (b"\n\n  \n", "empty manifest"),
        (b"split,label,path\n", "empty manifest: a header but no samples"),
        (b"\xef\xbb\xbfsplit,label,path\r\n", "empty manifest: a header but no samples"),
        (b"split,label,path\ntest,Real,\xff\xfe.png\n", "manifest is not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "manifest is not UTF-8 text"),
    ],
    ids=["zero-bytes", "blank-lines", "header-only", "bom-header-only", "not-utf8", "binary"],
)
def test_empty_and_unreadable_manifests(tmp_path, capsys, run_pattern, content, problem):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    assert err.startswith(f"salience-audit: error: {manifest}")
    assert problem in err


def test_manifest_that_does_not_exist(tmp_path, capsys, run_pattern):
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(tmp_path / "nope.csv"))
    assert code == EXIT_BAD_INPUT
    assert str(tmp_path / "nope.csv") in err


# ----------------------------------------------------------------------------- human maps


def _maps_dataset(tmp_path, maps: dict[str, object]):
    """Images f0..f3 and a header manifest with a human_map column; ``maps`` name -> array / bytes / None."""
    data = tmp_path / "data"
    lines = []
    for k, (name, content) in enumerate(maps.items()):
        rgb_image(data / f"f{k}.png", seed=k)
        if content is None:
            lines.append(("test", "Real", f"f{k}.png", ""))
            continue
        path = data / "maps" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            Image.fromarray(content).save(path)
        lines.append(("test", "Real", f"f{k}.png", f"maps/{name}"))
    return write_csv(data / "m.csv", lines, header=("split", "label", "path", "human_map"))


def test_human_maps_of_any_size_constant_or_colour_work(tmp_path, capsys, run_pattern):
    rng = np.random.default_rng(0)
    manifest = _maps_dataset(tmp_path, {
        "small.png": rng.integers(0, 256, (5, 7), dtype=np.uint8),  # another size: resized
        "large.png": rng.integers(0, 256, (300, 200), dtype=np.uint8),
        "constant.png": np.full((32, 32), 128, dtype=np.uint8),  # constant: no NaN
        "zero.png": np.zeros((32, 32), dtype=np.uint8),
        "colour.png": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),  # RGB: converted, with a note
        "none": None,  # no map: no human rows for this image (NaN, not a number made up)
    })
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest), "--out", str(out),
                         *FAST[:-1], "entropy,human")
    assert code == 0, err
    assert "salience-audit: warning: 1 human map(s) are not stored as grayscale" in err
    assert "colour.png, mode RGB); they are converted to grayscale (luma)" in err
    df = rows(out)
    human = df[df["measure"].isin(["human_ssim", "human_spearman"])]
    with_map = human[human["path"] != "f5.png"]
    assert len(with_map) == 2 * 2 * 5 and np.isfinite(with_map["value"]).all()
    assert human[human["path"] == "f5.png"]["value"].isna().all()
    assert np.isfinite(df[~df["measure"].str.startswith("human")]["value"]).all()


def test_missing_human_map_file_is_a_manifest_error(tmp_path, capsys, run_pattern):
    manifest = _maps_dataset(tmp_path, {"a.png": np.zeros((8, 8), dtype=np.uint8)})
    rgb_image(tmp_path / "data" / "f1.png")
    manifest.write_text(manifest.read_text() + "test,Real,f1.png,maps/gone.png\n")
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:3: human map file not found: {tmp_path / 'data' / 'maps' / 'gone.png'}" in err


def test_human_maps_folder_missing_or_partial(tmp_path, capsys, run_pattern, images):
    manifest = write_csv(images / "m.csv", [("test", "Real", f"f{k}.png") for k in range(3)])
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest),
                          "--human-maps", str(tmp_path / "no-such-folder"))
    assert code == EXIT_BAD_INPUT and "human-map folder does not exist" in err
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(maps / "f1.png")  # only f1 has a map
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest), "--human-maps", str(maps))
    assert code == 0, err


def test_corrupt_human_map_stops_or_is_rejected(tmp_path, capsys, run_pattern):
    manifest = _maps_dataset(tmp_path, {"ok.png": np.zeros((8, 8), dtype=np.uint8), "bad.png": b"not a png"})
    bad = tmp_path / "data" / "maps" / "bad.png"
    code, _, err = _audit(capsys, run_pattern, tmp_path, "--manifest", str(manifest))
    assert code == EXIT_BAD_INPUT
    assert f"{manifest}:3: {tmp_path / 'data' / 'f1.png'}: human map {bad}: not an image file" in err
    out = tmp_path / "skip"
    code, _, _ = audit(capsys, "--group", f"g={run_pattern}", "--manifest", str(manifest), "--out", str(out),
                       *FAST, "--on-bad-image", "skip")
    assert code == 0
    rej = rejected(out)
    assert rej[["path", "line"]].values.tolist() == [["f1.png", 3]]
    assert rej.loc[0, "reason"].startswith(f"human map {bad}: not an image file")
