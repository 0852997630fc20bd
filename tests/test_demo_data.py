"""The embedded demo data: contents, one look for both classes, proxy annotations, caching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salience_audit.data.demo import (
    PROXY_LANDMARKS,
    TARGET_MEAN,
    TARGET_STD,
    DemoData,
    build_demo_data,
)
from salience_audit.data.manifest import read_manifest
from salience_audit.data.sample import Sample

SIZE = 32


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    return build_demo_data(tmp_path_factory.mktemp("demo"), size=SIZE)


@pytest.fixture(scope="module")
def samples(demo: DemoData) -> list[Sample]:
    return read_manifest(demo.manifest)


def _gray(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        rgb = np.asarray(image)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    return rgb[..., 0].astype(np.float64) / 255.0


def test_counts_labels_and_columns(demo: DemoData, samples: list[Sample]) -> None:
    assert Counter(s.label for s in samples) == {0: 100, 1: 100}
    assert {s.dataset for s in samples} == {"demo"}
    assert all(s.human_map is not None and Path(s.human_map).parent == demo.annotations_dir for s in samples)
    assert all(Path(s.human_map).name == Path(s.path).name for s in samples)
    header = demo.manifest.read_text().splitlines()[0]
    assert header == "split,label,path,human_map,dataset"
    out = read_manifest(demo.out_of_set_manifest)
    assert len(out) == 100 and {s.label for s in out} == {-1} and all(s.human_map is None for s in out)
    assert len({s.path for s in samples} | {s.path for s in out}) == 300


def test_split_is_stratified(samples: list[Sample]) -> None:
    counts = Counter((s.label, s.split) for s in samples)
    assert counts == {(0, "train"): 70, (0, "test"): 30, (1, "train"): 70, (1, "test"): 30}


def test_images_are_gray_rgb_of_the_right_size(samples: list[Sample], demo: DemoData) -> None:
    for s in samples[::25] + read_manifest(demo.out_of_set_manifest)[::25]:
        assert _gray(s.path).shape == (SIZE, SIZE)


def test_classes_have_matched_brightness_and_contrast(samples: list[Sample]) -> None:
    stats = {0: [], 1: []}
    for s in samples:
        pixels = _gray(s.path)
        stats[s.label].append((pixels.mean(), pixels.std()))
    real, synthetic = np.array(stats[0]), np.array(stats[1])
    for cls in (real, synthetic):
        assert np.all(np.abs(cls[:, 0] - TARGET_MEAN) < 0.02)  # every image, not just on average
        assert np.all(np.abs(cls[:, 1] - TARGET_STD) < 0.03)
    assert abs(real[:, 0].mean() - synthetic[:, 0].mean()) < 0.005
    assert abs(real[:, 1].mean() - synthetic[:, 1].mean()) < 0.005


def test_proxy_annotations_are_sparse_blobs(samples: list[Sample]) -> None:
    for s in (samples[0], samples[-1]):
        assert s.human_map is not None
        with Image.open(s.human_map) as image:
            assert image.mode == "L" and image.size == (SIZE, SIZE)
            heat = np.asarray(image).astype(np.float64) / 255.0
        assert (heat == 0).mean() > 0.6
        assert heat.max() > 0.95
        source = "real" if s.label == 0 else "synthetic"
        for x, y in PROXY_LANDMARKS[source].values():
            assert heat[int(y * SIZE), int(x * SIZE)] > 0.7  # a blob on every landmark
        assert heat[1, 1] == 0 and heat[-2, -2] == 0  # corners are empty


def test_cache_is_reused(demo: DemoData) -> None:
    files = sorted(p for p in demo.root.rglob("*") if p.is_file() and p.name != ".build.lock")
    before = {p: p.stat().st_mtime_ns for p in files}
    again = build_demo_data(demo.root, size=SIZE)
    assert again == demo and again.recipe_hash == demo.recipe_hash
    assert {p: p.stat().st_mtime_ns for p in files} == before
    stored = json.loads((demo.root / "recipe.json").read_text())
    assert stored["recipe_hash"] == demo.recipe_hash and stored["recipe"]["size"] == SIZE


def test_rebuild_when_recipe_changes(tmp_path: Path) -> None:
    first = build_demo_data(tmp_path, size=16, n_synthetic=4, seed=1)
    assert Counter(s.label for s in read_manifest(first.manifest)) == {0: 100, 1: 4}
    (tmp_path / "unrelated.txt").write_text("kept")
    second = build_demo_data(tmp_path, size=16, n_synthetic=6, seed=1)
    assert second.recipe_hash != first.recipe_hash
    assert Counter(s.label for s in read_manifest(second.manifest)) == {0: 100, 1: 6}
    assert len(list((tmp_path / "images" / "synthetic").iterdir())) == 6  # old files gone
    assert (tmp_path / "unrelated.txt").read_text() == "kept"
    # an interrupted build (no recipe.json) is rebuilt as well
    (tmp_path / "recipe.json").unlink()
    third = build_demo_data(tmp_path, size=16, n_synthetic=6, seed=1)
    assert third.recipe_hash == second.recipe_hash and (tmp_path / "recipe.json").exists()
