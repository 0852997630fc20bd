"""Data as users have it: folder layouts, flat folders, unknown labels, human maps matched by relative path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from byo_fixtures import audit, image_tree, rows
from PIL import Image

from salience_audit.data.manifest import ManifestError, read_manifest
from salience_audit.models.audit_model import AuditModel

CLI = ["--device", "cpu", "--no-report", "--measures", "entropy,human"]


@pytest.fixture(scope="module")
def run_pattern(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("byo-data-run") / "r"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(AuditModel.from_arch("small_cnn").module.state_dict(), folder / "model.pt")
    (folder / "run.json").write_text(json.dumps({"arch": "small_cnn", "input_size": 32, "name": "r"}))
    return str(folder)


def _map(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("classes", [("real", "fake"), ("Real", "Synthetic"), ("0", "1")])
def test_class_folder_names(tmp_path, classes) -> None:
    samples = read_manifest(image_tree(tmp_path / "d", classes, per_class=2, size=16))
    assert [s.label for s in samples] == [0, 0, 1, 1]


def test_configured_class_folders_and_flat_folders(tmp_path) -> None:
    tree = image_tree(tmp_path / "d", ("authentic", "gan"), per_class=1, size=16)
    samples = read_manifest(tree, class_folders="authentic=Real,gan=Synthetic")
    assert [(s.key, s.label) for s in samples] == [("authentic/authentic_0.png", 0), ("gan/gan_0.png", 1)]
    by_class = read_manifest(tree, label="synthetic", class_folders="authentic=Real,gan=Synthetic")
    assert [s.label for s in by_class] == [0, 1]  # class sub-folders win over a flat-folder label
    flat = read_manifest(tree, label="synthetic")  # sub-folders that are not classes: one label for all
    assert [s.label for s in flat] == [1, 1]
    with pytest.raises(ManifestError, match="needs their label"):
        read_manifest(image_tree(tmp_path / "flat", ("",), per_class=1, size=16))
    with pytest.raises(ManifestError, match="out-of-set datasets only"):
        read_manifest(tree, label="unknown", out_of_set=False)
    assert [s.label for s in read_manifest(tree, label="unknown", out_of_set=True)] == [-1, -1]


def test_unknown_labels_only_in_out_of_set_manifests(tmp_path, capsys, run_pattern) -> None:
    image_tree(tmp_path / "root" / "nonfaces", ("",), per_class=2, size=32)
    csv = tmp_path / "nonfaces.csv"
    csv.write_text("test,Unknown,/nonfaces/_0.png\ntest,,/nonfaces/_1.png\n", encoding="utf-8")
    faces = image_tree(tmp_path / "faces", ("real", "fake"), per_class=1, size=32)
    common = ["--group", f"g={run_pattern}", "--root", str(tmp_path / "root"), *CLI]
    code, _, err = audit(capsys, *common, "--manifest", str(csv), "--out", str(tmp_path / "a"))
    assert code == 1 and f"{csv}:1: unknown label 'Unknown'" in err and f"{csv}:2: unknown label ''" in err
    assert "only in out-of-set manifests (--ood-manifest)" in err
    code, _, err = audit(capsys, *common, "--manifest", str(faces), "--ood-manifest", str(csv),
                         "--out", str(tmp_path / "b"))
    assert code == 0, err
    got = rows(tmp_path / "b", "entropy")
    assert sorted(got[got["dataset"] == "nonfaces"]["label"]) == [-1, -1]


def test_missing_file_messages_say_how_the_path_was_resolved(tmp_path) -> None:
    (tmp_path / "root").mkdir()
    study = tmp_path / "study.csv"
    study.write_text("test,Real,/faces/a.png\n", encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        read_manifest(study, root=tmp_path / "root")
    assert f"relative to --root {tmp_path / 'root'}" in str(err.value) and "leading '/'" in str(err.value)
    header = tmp_path / "h.csv"
    header.write_text(f"split,label,path\ntest,Real,faces/a.png\ntest,Real,{tmp_path / 'abs.png'}\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(header)
    text = str(err.value)
    assert f"relative to the manifest's folder {tmp_path}" in text and "an absolute path, used as written" in text


def _collision_tree(tmp_path: Path) -> Path:
    """Two generators with an image of the same name: StyleGAN-1/000700.png and StyleGAN-2/000700.png."""
    data = tmp_path / "data"
    for gen in ("StyleGAN-1", "StyleGAN-2"):
        image_tree(data / "Synthetic" / gen, ("",), per_class=1, size=32)
        (data / "Synthetic" / gen / "_0.png").rename(data / "Synthetic" / gen / "000700.png")
    image_tree(data / "Real", ("",), per_class=1, size=32)
    return data


def test_stem_collision_is_refused_naming_both_images(tmp_path, capsys, run_pattern) -> None:
    data = _collision_tree(tmp_path)
    _map(tmp_path / "flat" / "000700.png", 1)
    common = ["--group", f"g={run_pattern}", "--manifest", str(data), *CLI]
    code, _, err = audit(capsys, *common, "--human-maps", str(tmp_path / "flat"), "--out", str(tmp_path / "a"))
    assert code == 1
    assert "StyleGAN-1/000700.png" in err and "StyleGAN-2/000700.png" in err and "share the stem" in err
    code, _, err = audit(capsys, *common, "--human-maps", str(tmp_path / "flat"), "--human-map-match", "stem",
                         "--out", str(tmp_path / "b"))
    assert code == 0, err  # accepted knowingly: both images get the one map
    assert len(rows(tmp_path / "b", "human_ssim").dropna(subset=["value"])) == 2


def test_human_maps_mirroring_the_image_tree_are_matched_by_relative_path(tmp_path) -> None:
    data = _collision_tree(tmp_path)
    for k, gen in enumerate(("StyleGAN-1", "StyleGAN-2")):
        _map(tmp_path / "maps" / "Synthetic" / gen / "000700.png", k)
    samples = {s.key: s for s in read_manifest(data, human_maps=tmp_path / "maps")}
    assert samples["Synthetic/StyleGAN-1/000700.png"].human_map == str(
        tmp_path / "maps" / "Synthetic" / "StyleGAN-1" / "000700.png")
    assert samples["Synthetic/StyleGAN-2/000700.png"].human_map == str(
        tmp_path / "maps" / "Synthetic" / "StyleGAN-2" / "000700.png")
    assert samples["Real/_0.png"].human_map is None


def test_flat_folders_through_the_cli(tmp_path, capsys, run_pattern) -> None:
    gan = image_tree(tmp_path / "stylegan3", ("",), per_class=2, size=32)  # images directly in the folder
    other = image_tree(tmp_path / "nonfaces", ("",), per_class=1, size=32)
    common = ["--group", f"g={run_pattern}", *CLI]
    code, _, err = audit(capsys, *common, "--manifest", str(gan), "--out", str(tmp_path / "a"))
    assert code == 1 and "needs their label" in err and "--label real|synthetic" in err
    code, _, err = audit(capsys, *common, "--manifest", str(gan), "--label", "synthetic",
                         "--ood-manifest", str(other), "--out", str(tmp_path / "b"))
    assert code == 0, err
    got = rows(tmp_path / "b", "entropy")
    assert sorted(got[got["dataset"] == "stylegan3"]["label"]) == [1, 1]
    assert list(got[got["dataset"] == "nonfaces"]["label"]) == [-1]  # out-of-set flat folder: unknown
    code, _, err = audit(capsys, *common, "--manifest", str(gan), "--label", "synthetic", "--ood-manifest",
                         str(other), "--ood-label", "real", "--out", str(tmp_path / "c"))
    assert code == 0, err
    got = rows(tmp_path / "c", "entropy")
    assert list(got[got["dataset"] == "nonfaces"]["label"]) == [0]
