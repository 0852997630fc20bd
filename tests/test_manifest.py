"""Manifest reading: the three input forms, every malformed-line case, hashing and writing."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salience_audit.data.manifest import (
    ManifestError,
    manifest_hash,
    read_manifest,
    read_manifests,
    write_manifest,
)
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A dataset root with a few real image files."""
    data = tmp_path / "data"
    for name in ("real/a.png", "real/b.png", "fake/c.png", "fake/d.png"):
        _png(data / name)
    return data


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _single_problem(err: pytest.ExceptionInfo[InputError], path: Path, line: int) -> str:
    assert isinstance(err.value, ManifestError)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert err.value.path == str(path) and err.value.line == line
    assert len(err.value.problems) == 1
    return err.value.problem


# ----------------------------------------------------------------------------- (a) original study


def test_study_csv(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "progan.csv", "train,Real,/real/a.png\ntest,synthetic,/fake/c.png\nTEST,REAL,/real/b.png\n")
    samples = read_manifest(manifest, root=root)
    assert [s.label for s in samples] == [0, 1, 0]
    assert [s.split for s in samples] == ["train", "test", "test"]
    assert samples[0].path == str(root / "real" / "a.png")
    assert samples[1].key == "/fake/c.png"
    assert {s.dataset for s in samples} == {"progan"}
    assert [s.line for s in samples] == [1, 2, 3]
    assert all(s.source == str(manifest) and s.human_map is None for s in samples)
    assert read_manifest(manifest, root=root, dataset="other")[0].dataset == "other"


def test_study_csv_needs_root(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "train,Real,/real/a.png\n")
    with pytest.raises(ManifestError, match="root folder is required"):
        read_manifest(manifest)


def test_study_csv_human_maps(root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    maps = tmp_path / "maps"
    _png(maps / "a.jpg")  # same stem, other extension
    _png(maps / "c.png")
    manifest = _write(tmp_path / "m.csv", "train,Real,/real/a.png\ntrain,Real,/real/b.png\ntrain,Synthetic,/fake/c.png\n")
    with caplog.at_level(logging.WARNING, logger="salience_audit.data.manifest"):
        samples = read_manifest(manifest, root=root, human_maps=maps)
    assert samples[0].human_map == str(maps / "a.jpg")
    assert samples[1].human_map is None
    assert samples[2].human_map == str(maps / "c.png")
    assert "1 of 3 images have no human map" in caplog.text


def test_missing_human_map_folder(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "train,Real,/real/a.png\n")
    with pytest.raises(ManifestError, match="human-map folder"):
        read_manifest(manifest, root=root, human_maps=tmp_path / "nowhere")


def test_bom_and_crlf(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "\ufefftrain,Real,/real/a.png\r\ntest,Synthetic,/fake/c.png\r\n\r\n")
    samples = read_manifest(manifest, root=root)
    assert [(s.split, s.label, s.line) for s in samples] == [("train", 0, 1), ("test", 1, 2)]
    header = _write(tmp_path / "h.csv", "\ufeffsplit,label,path\r\ntrain,Real,real/a.png\r\n")
    assert read_manifest(header, root=root)[0].path == str(root / "real" / "a.png")


# ----------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("train,Fake,/real/a.png", "unknown label 'Fake'"),
        ("validation,Real,/real/a.png", "unknown split 'validation'"),
        ("train,Real", "expected 3 columns"),
        ("train,Real,/real/a.png,extra", "expected 3 columns"),
        ("train,Real,", "empty path"),
        ("train,Real,/real/missing.png", "file not found"),
        ("train,Real,/../outside.png", "escapes the dataset root"),
        ("train,Real,/real/../../outside.png", "escapes the dataset root"),
    ],
)
def test_bad_line_names_file_and_line(root: Path, tmp_path: Path, line: str, expected: str) -> None:
    _png(tmp_path / "outside.png")  # exists, but outside the root
    manifest = _write(tmp_path / "m.csv", f"train,Real,/real/b.png\n{line}\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest, root=root)
    assert expected in _single_problem(err, manifest, 2)


def test_missing_file_allowed_without_check(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "train,Real,/real/missing.png\n")
    assert read_manifest(manifest, root=root, check_files=False)[0].path.endswith("missing.png")


def test_duplicate_path(root: Path, tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "train,Real,/real/a.png\ntest,Real,/real/b.png\ntest,Real,/real/./a.png\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest, root=root)
    assert "duplicate path" in _single_problem(err, manifest, 3)
    assert "line 1" in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n", "\ufeff"])
def test_empty_manifest(tmp_path: Path, root: Path, text: str) -> None:
    manifest = _write(tmp_path / "m.csv", text)
    with pytest.raises(InputError) as err:
        read_manifest(manifest, root=root)
    assert "empty manifest" in _single_problem(err, manifest, 1)


def test_header_only_is_empty(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "split,label,path\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest)
    assert "empty manifest" in _single_problem(err, manifest, 1)


def test_all_problems_reported_at_once(root: Path, tmp_path: Path) -> None:
    manifest = _write(
        tmp_path / "m.csv",
        "train,Real,/real/a.png\ntrain,Bogus,/real/b.png\nfoo,Real,/fake/c.png\ntrain,Real\ntrain,Real,/real/a.png\n",
    )
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest, root=root)
    problems = err.value.problems
    assert [p.line for p in problems] == [2, 3, 4, 5]
    assert all(p.path == str(manifest) for p in problems)
    message = str(err.value).splitlines()
    assert message[0].startswith(f"{manifest}:2: unknown label")
    assert "4 problems" in message[1]
    assert any(m.startswith(f"{manifest}:5: duplicate path") for m in message)
    path, line, problem = problems[1]  # plain (path, line, problem) tuples
    assert (path, line) == (str(manifest), 3) and "unknown split" in problem
    clone = pickle.loads(pickle.dumps(err.value))  # survives worker processes
    assert clone.problems == problems and str(clone) == str(err.value)


def test_not_utf8(tmp_path: Path, root: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"train,Real,/real/a.png\ntrain,Real,/real/\xff.png\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest, root=root)
    assert "not UTF-8" in _single_problem(err, manifest, 2)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- (b) header CSV


def test_header_csv_relative_to_manifest_folder(root: Path) -> None:
    _png(root / "maps" / "a_map.png")
    manifest = _write(
        root / "set.csv",
        "path,dataset,label,human_map,split\n"
        "real/a.png,lfw,0,maps/a_map.png,train\n"
        "fake/c.png,,Synthetic,,test\n"
        "real/b.png,lfw,unknown,,test\n",
    )
    samples = read_manifest(manifest)
    assert [s.label for s in samples] == [0, 1, -1]
    assert samples[0].human_map == str(root / "maps" / "a_map.png")
    assert samples[1].human_map is None
    assert [s.dataset for s in samples] == ["lfw", "set", "lfw"]
    assert samples[2].path == str(root / "real" / "b.png")


def test_header_csv_root_and_absolute_paths(root: Path, tmp_path: Path) -> None:
    absolute = _png(tmp_path / "elsewhere" / "x.png")
    manifest = _write(tmp_path / "m.csv", f"split,label,path\ntrain,1,fake/c.png\ntest,0,{absolute}\n")
    samples = read_manifest(manifest, root=root)
    assert samples[0].path == str(root / "fake" / "c.png")
    assert samples[1].path == str(absolute)


def test_header_unknown_columns_named(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "m.csv", "split,label,path,weight,camera\ntrain,0,a.png,1,x\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest)
    problem = _single_problem(err, manifest, 1)
    assert "'weight'" in problem and "'camera'" in problem


def test_header_missing_column_and_bad_rows(tmp_path: Path, root: Path) -> None:
    missing = _write(tmp_path / "m1.csv", "label,path\n0,a.png\n")
    with pytest.raises(InputError, match="missing required column"):
        read_manifest(missing)
    bad = _write(root / "m2.csv", "split,label,path,human_map\ntrain,0,real/a.png\ntrain,0,real/b.png,nomap.png\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(bad)
    assert [(p.line, "columns" in p.problem) for p in err.value.problems] == [(2, True), (3, False)]
    assert "human map file not found" in err.value.problems[1].problem


def test_header_escape(tmp_path: Path, root: Path) -> None:
    manifest = _write(root / "m.csv", "split,label,path\ntrain,0,../outside.png\n")
    with pytest.raises(InputError) as err:
        read_manifest(manifest)
    assert "escapes" in _single_problem(err, manifest, 2)


# ----------------------------------------------------------------------------- (c) class folders


def test_class_folders(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _png(tree / "real" / "x" / "1.png")
    _png(tree / "real" / "2.JPG")  # upper-case extension
    _png(tree / "SYNTHETIC" / "3.png")
    (tree / "SYNTHETIC" / "notes.txt").write_text("ignored")
    (tree / "README.md").write_text("ignored")
    samples = read_manifest(tree)
    assert [(s.key, s.label, s.split) for s in samples] == [
        ("real/2.JPG", 0, "test"), ("real/x/1.png", 0, "test"), ("SYNTHETIC/3.png", 1, "test"),
    ]
    assert {s.dataset for s in samples} == {"tree"}


def test_class_folders_unknown_names_listed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _png(tree / "real" / "1.png")
    _png(tree / "forged" / "2.png")
    with pytest.raises(InputError) as err:
        read_manifest(tree)
    assert "'forged'" in str(err.value) and str(err.value).startswith(str(tree))
    assert "--class-folders" in str(err.value)


def test_class_folders_without_images(tmp_path: Path) -> None:
    (tmp_path / "tree" / "Real").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        read_manifest(tmp_path / "tree")


# ----------------------------------------------------------------------------- several, hash, write


def test_read_manifests_and_conflicts(root: Path, tmp_path: Path) -> None:
    a = _write(tmp_path / "progan.csv", "test,Synthetic,/fake/c.png\n")
    b = _write(tmp_path / "ffhq.csv", "test,Real,/real/a.png\n")
    samples = read_manifests([a, b], root=root)
    assert [s.dataset for s in samples] == ["progan", "ffhq"]
    os.makedirs(tmp_path / "other")
    c = _write(tmp_path / "other" / "progan.csv", "test,Synthetic,/fake/d.png\n")
    with pytest.raises(ManifestError, match="dataset name 'progan' is also used"):
        read_manifests([a, c], root=root)


def test_manifest_hash() -> None:
    a = Sample(path="/x/a.png", label=0, key="a.png")
    b = Sample(path="/x/b.png", label=1, key="b.png")
    moved = Sample(path="/elsewhere/a.png", label=0, key="a.png")
    assert manifest_hash([a, b]) == manifest_hash([b, moved])
    assert len(manifest_hash([a])) == 64
    assert manifest_hash([a, b]) != manifest_hash([a, Sample(path="/x/b.png", label=0, key="b.png")])


def test_write_then_read_roundtrip(root: Path, tmp_path: Path) -> None:
    _png(root / "maps" / "a.png")
    samples = [
        Sample(path=str(root / "real" / "a.png"), label=0, split="train", dataset="d1", human_map=str(root / "maps" / "a.png")),
        Sample(path=str(root / "fake" / "c.png"), label=1, split="test", dataset="d2"),
        Sample(path=str(root / "real" / "b.png"), label=-1, split="test", dataset="d2"),
    ]
    target = root / "out.csv"
    write_manifest(samples, target)
    assert target.read_text().splitlines()[1] == "train,Real,real/a.png,maps/a.png,d1"
    back = read_manifest(target)
    assert [(s.path, s.label, s.split, s.dataset, s.human_map) for s in back] == [
        (s.path, s.label, s.split, s.dataset, s.human_map) for s in samples
    ]
    outside = tmp_path / "sub" / "m.csv"
    write_manifest(samples[:1], outside)
    assert str(root / "real" / "a.png") in outside.read_text()
