"""Maps as users have them: precomputed map groups audited without a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from byo_fixtures import audit, image_tree, rows
from PIL import Image
from skimage.measure import shannon_entropy

from salience_audit.data.images import load_image
from salience_audit.models.audit_model import load_run
from salience_audit.models.small_cnn import SmallCNN
from salience_audit.salience.extract import SalienceExtractor

SIZE = 56  # SmallCNN: 7x7 maps at 56 px, like the study's DenseNet at 224 px
CLI = ["--device", "cpu", "--no-report", "--batch-size", "4"]


def _png(path: Path, levels: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(levels.astype(np.uint16) * 257).save(path)
    elif mode == "RGB":
        Image.fromarray(np.repeat(levels.astype(np.uint8)[..., None], 3, axis=2), "RGB").save(path)
    else:
        Image.fromarray(levels.astype(np.uint8), "L").save(path)
    return path


def test_hand_made_7x7_map_entropy_equals_scikit_image(tmp_path, capsys) -> None:
    data = image_tree(tmp_path / "data", ("Real", "Synthetic"), per_class=1, size=32)
    rng = np.random.default_rng(3)
    full = rng.integers(0, 256, size=(7, 7))
    full.flat[:2] = (0, 255)  # spans 0..255: min-max normalisation keeps every level
    narrow = rng.choice([10, 10, 10, 40, 90, 90, 200], size=(7, 7))  # 4 levels, repeated
    expected = {"Real/Real_0.png": shannon_entropy(full.astype(np.uint8)),
                "Synthetic/Synthetic_0.png": shannon_entropy(narrow.astype(np.uint8))}
    for run, mode in (("gray8", "L"), ("gray16", "I;16"), ("colour", "RGB")):
        _png(tmp_path / "maps" / run / "Real" / "Real_0.png", full, mode)
        _png(tmp_path / "maps" / run / "Synthetic" / "Synthetic_0.png", narrow, mode)
    code, _, err = audit(capsys, "--map-group", f"hand={tmp_path / 'maps' / '*'}", "--manifest", str(data),
                         "--measures", "entropy", "--out", str(tmp_path / "out"), *CLI)
    assert code == 0, err
    got = rows(tmp_path / "out", "entropy")
    assert sorted(got["run"].unique()) == ["colour", "gray16", "gray8"]
    for _, row in got.iterrows():
        assert row["value"] == pytest.approx(expected[row["path"]], abs=1e-12), (row["run"], row["path"])
    assert expected["Synthetic/Synthetic_0.png"] < expected["Real/Real_0.png"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two random SmallCNN run folders, a small image tree, and their Grad-CAM maps saved as files."""
    root = tmp_path_factory.mktemp("byo-maps")
    data = image_tree(root / "data", ("Real", "Synthetic"), per_class=3, size=64, seed=1)
    images = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    for k in range(2):
        torch.manual_seed(10 + k)
        folder = root / "runs" / f"seed{k}"
        folder.mkdir(parents=True)
        torch.save(SmallCNN(num_classes=2).state_dict(), folder / "model.pt")
        (folder / "run.json").write_text(json.dumps({"arch": "small_cnn", "input_size": SIZE, "name": f"seed{k}"}))
        model = load_run(folder).eval()
        x = torch.stack([load_image(data / rel, SIZE) for rel in images])
        maps = SalienceExtractor(model, "gradcam")(x).maps.numpy()
        assert maps.shape[1:] == (7, 7)
        arrays = {}
        for rel, m in zip(images, maps):
            stem = Path(rel).with_suffix("")
            (root / "npy" / f"seed{k}" / stem).parent.mkdir(parents=True, exist_ok=True)
            np.save(root / "npy" / f"seed{k}" / f"{stem}.npy", m)
            _png(root / "png" / f"seed{k}" / f"{stem}.png", np.floor(255 * m))
            arrays[rel] = m
        (root / "npz").mkdir(exist_ok=True)
        np.savez(root / "npz" / f"seed{k}.npz", **arrays)
        (root / "parquet").mkdir(exist_ok=True)
        pd.DataFrame({"path": list(arrays), "height": 7, "width": 7,
                      "map": [m.ravel().tolist() for m in arrays.values()]}).to_parquet(root / "parquet" / f"seed{k}.parquet")
    return {"root": root, "data": data}


MAP_MEASURES = ("entropy", "entropy_norm", "spatial_entropy", "stability_ssim", "stability_spearman", "stability_iou")
EIGHT_BIT = ("entropy", "entropy_norm", "stability_ssim")  # computed on floor(255 S): a PNG holds them exactly


def test_precomputed_maps_give_the_rows_of_the_same_maps_via_models(two_runs, tmp_path, capsys) -> None:
    root, data = two_runs["root"], two_runs["data"]
    code, _, err = audit(capsys, "--group", f"m={root / 'runs' / '*'}", "--manifest", str(data),
                         "--measures", "entropy,stability", "--out", str(tmp_path / "models"), *CLI)
    assert code == 0, err
    for kind, pattern, measures in (("npy", "npy/*", MAP_MEASURES), ("npz", "npz/*.npz", MAP_MEASURES),
                                    ("parquet", "parquet/*.parquet", MAP_MEASURES), ("png", "png/*", EIGHT_BIT)):
        code, _, err = audit(capsys, "--map-group", f"m={root / pattern}", "--manifest", str(data),
                             "--measures", "entropy,stability", "--out", str(tmp_path / kind), *CLI)
        assert code == 0, (kind, err)
        for measure in measures:
            a, b = rows(tmp_path / "models", measure), rows(tmp_path / kind, measure)
            assert len(a) > 0 and list(a["run"]) == list(b["run"]) and list(a["path"]) == list(b["path"])
            np.testing.assert_allclose(b["value"], a["value"], rtol=0, atol=1e-6, err_msg=f"{kind} {measure}")
    table = pd.read_parquet(tmp_path / "npy" / "results")
    assert not ({"score", "correct"} & set(table["measure"]))  # no model: no detection rows


def test_model_measures_are_skipped_with_one_line(two_runs, tmp_path, capsys) -> None:
    root, data = two_runs["root"], two_runs["data"]
    code, _, err = audit(capsys, "--map-group", f"m={root / 'npy' / '*'}", "--manifest", str(data),
                         "--measures", "entropy,noise,transforms", "--out", str(tmp_path / "o"), *CLI)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "precomputed maps" in line]
    assert len(lines) == 1 and "detection, noise, transforms are skipped" in lines[0]
    assert set(pd.read_parquet(tmp_path / "o" / "results")["measure"]) == {"entropy", "entropy_norm", "spatial_entropy"}
    from salience_audit.cli import main

    assert main(["report", str(tmp_path / "o")]) == 0
    report = (tmp_path / "o" / "report" / "report.md").read_text(encoding="utf-8")
    assert "holds precomputed maps (no model): detection, noise, transforms need a model" in report


def test_missing_map_names_the_image_and_the_folder(two_runs, tmp_path, capsys) -> None:
    root, data = two_runs["root"], two_runs["data"]
    (root / "npy-missing").mkdir()
    (root / "npy" / "seed0" / "Real").rename(root / "npy-missing" / "Real")
    try:
        code, _, err = audit(capsys, "--map-group", f"m={root / 'npy' / 'seed0'}", "--manifest", str(data),
                             "--measures", "entropy", "--out", str(tmp_path / "o"), *CLI)
    finally:
        (root / "npy-missing" / "Real").rename(root / "npy" / "seed0" / "Real")
    assert code == 1 and "no precomputed map for image" in err and "Real_0.png" in err and "seed0" in err


def test_numpy_maps_are_accepted_by_the_measure_functions() -> None:
    from salience_audit.measures import similarity
    from salience_audit.measures.entropy import histogram_entropy
    from salience_audit.measures.stability import pairwise_ssim

    maps = np.random.default_rng(0).random((2, 3, 7, 7))
    want = histogram_entropy(torch.from_numpy(maps[0])).numpy()
    got = histogram_entropy(maps[0])
    assert isinstance(got, np.ndarray) and np.array_equal(got, want)
    assert np.array_equal(similarity.ssim_maps(maps[0], maps[1]),
                          similarity.ssim_maps(torch.from_numpy(maps[0]), torch.from_numpy(maps[1])).numpy())
    pairs, values = pairwise_ssim(maps)
    assert pairs == [(0, 1)] and isinstance(values, np.ndarray) and values.shape == (1, 3)


def test_bad_map_files_are_skipped_on_request_and_no_image_is_decoded(two_runs, tmp_path, capsys) -> None:
    import shutil

    root, data = two_runs["root"], two_runs["data"]
    maps = tmp_path / "maps"
    shutil.copytree(root / "npy", maps)
    (maps / "seed1" / "Synthetic" / "Synthetic_0.npy").write_bytes(b"not a numpy file")
    images = tmp_path / "images"
    shutil.copytree(data, images)
    (images / "Real" / "Real_1.png").write_bytes(b"")  # a broken image: never decoded for maps
    common = ["--map-group", f"m={maps / '*'}", "--manifest", str(images), "--measures", "entropy", *CLI]
    code, _, err = audit(capsys, *common, "--out", str(tmp_path / "stop"))
    assert code == 1 and "Synthetic_0.npy" in err and "cannot read map file" in err
    code, out, err = audit(capsys, *common, "--on-bad-image", "skip", "--out", str(tmp_path / "skip"))
    assert code == 0, err
    rejected = pd.read_csv(tmp_path / "skip" / "rejected.csv")
    assert list(rejected["path"]) == ["Synthetic/Synthetic_0.png"] and "precomputed map" in rejected["reason"][0]
    got = rows(tmp_path / "skip", "entropy")
    assert len(got) == 2 * 5 and "Synthetic/Synthetic_0.png" not in set(got["path"])
