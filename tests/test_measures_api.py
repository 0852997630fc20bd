"""The measures' functional forms and update/compute objects.

Oracle: the pinned rows of tests/golden/rows.parquet, written by the audit pipeline of the
code before the measures became a library (commit 6aaee52). The functions here recompute
the same images with the same runs and must give the same per-image values (within float
noise of a different batch composition), which shows that the functions and the audit
share one implementation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from golden_audit import GOLDEN_ROWS, build_inputs

import salience_audit as sa
from salience_audit.data.images import load_image, load_map

ATOL = 1e-5


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("golden-api")
    groups, datasets = build_inputs(root)
    faces = datasets["faces"]
    images = torch.stack([load_image(s.path, 64) for s in faces])
    labels = torch.tensor([s.label for s in faces])
    rows = pd.read_parquet(GOLDEN_ROWS)
    rows = rows[rows["dataset"] == "faces"]
    runs = {p.name: sa.load_run(p) for g in groups.values() for p in g}
    return {"root": root, "faces": faces, "images": images, "labels": labels, "rows": rows, "runs": runs}


def _expected(rows: pd.DataFrame, run: str, measure: str, variant: str = "") -> np.ndarray:
    if "|" in run and "run_a" in rows.columns:  # a pair of runs: row layout 2 names them in run_a / run_b
        a, b = run.split("|", 1)
        who = (rows["run_a"] == a) & (rows["run_b"] == b)
    else:
        who = rows["run"] == run
    sel = rows[who & (rows["measure"] == measure) & (rows["variant"] == variant)]
    return sel.sort_values("index")["value"].to_numpy()


def test_entropy_accepts_numpy_and_streams() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((6, 7, 7))
    from_numpy = sa.measures.entropy(maps)
    from_tensor = sa.measures.entropy(torch.from_numpy(maps))
    assert set(from_numpy) == {"entropy", "entropy_norm", "spatial_entropy"}
    for key in from_numpy:
        assert isinstance(from_numpy[key], np.ndarray) and from_numpy[key].shape == (6,)  # numpy in, numpy out
        np.testing.assert_array_equal(from_numpy[key], from_tensor[key].numpy())
    stream = sa.measures.Entropy()
    stream.update(torch.from_numpy(maps[:2]))
    stream.update(torch.from_numpy(maps[2:]))
    streamed = stream.compute()
    for key in from_numpy:
        np.testing.assert_array_equal(streamed[key].numpy(), from_numpy[key])
    numpy_stream = sa.measures.Entropy()
    numpy_stream.update(maps[:4])
    numpy_stream.update(maps[4:])
    np.testing.assert_array_equal(numpy_stream.compute()["entropy_norm"], from_numpy["entropy_norm"])
    stream.reset()
    with pytest.raises(RuntimeError):
        stream.compute()


def test_entropy_and_stability_equal_the_audit_rows(golden) -> None:
    rows, images = golden["rows"], golden["images"]
    names = ["alpha-seed11", "alpha-seed12"]
    maps = [sa.SalienceExtractor(golden["runs"][n], "gradcam")(images).maps.detach() for n in names]
    ent = sa.measures.entropy(maps[0].numpy())
    for key in ("entropy", "entropy_norm", "spatial_entropy"):
        np.testing.assert_allclose(ent[key], _expected(rows, names[0], key), atol=ATOL)
    stab = sa.measures.stability(maps)
    assert stab["pairs"].tolist() == [[0, 1]]
    for key in ("stability_ssim", "stability_spearman", "stability_iou"):
        assert stab[key].shape == (12, 1)
        np.testing.assert_allclose(stab[key][:, 0].numpy(), _expected(rows, "|".join(names), key), atol=ATOL)
    stream = sa.measures.Stability()
    stream.update([m[:5] for m in maps])
    stream.update([m[5:] for m in maps])
    torch.testing.assert_close(stream.compute()["stability_ssim"], stab["stability_ssim"])


def test_pass_measures_equal_the_audit_rows(golden) -> None:
    rows, images, labels = golden["rows"], golden["images"], golden["labels"]
    name = "beta-seed21"
    explainer = sa.SalienceExtractor(golden["runs"][name], "gradcam")

    eq = sa.measures.equivariance(explainer, images)
    assert eq["equivariance"].shape == (12, 12) and len(eq["variants"]) == 12
    for k, variant in enumerate(eq["variants"]):
        for key in ("equivariance", "invariance", "transform_score_change"):
            np.testing.assert_allclose(eq[key][:, k].numpy(), _expected(rows, name, key, variant), atol=ATOL,
                                       err_msg=f"{key} {variant}")
    np.testing.assert_allclose(eq["all"]["equivariance"].numpy(), eq["equivariance"].numpy().mean(axis=1))

    deg = sa.measures.degradation(explainer, images, labels)
    for k, mode in enumerate(("background", "object")):
        for key in ("degrade_score_change", "degrade_correct", "degrade_ssim"):
            np.testing.assert_allclose(deg[key][:, k].numpy(), _expected(rows, name, key, mode), atol=ATOL)
    drop = deg["degrade_true_score_drop"].numpy()
    sign = np.where(labels.numpy() == 1, -1.0, 1.0)[:, None]
    np.testing.assert_allclose(drop, deg["degrade_score_change"].numpy() * sign)
    np.testing.assert_allclose(deg["degrade_faithfulness"].numpy(), drop[:, 1] - drop[:, 0])

    dele = sa.measures.deletion(explainer, images, steps=4)
    for key in ("deletion_auc", "insertion_auc"):
        np.testing.assert_allclose(dele[key].numpy(), _expected(rows, name, key), atol=ATOL)
    assert dele["deletion_auc_random"].shape == (12,)
    assert dele["deletion"].shape == (12, 5) and dele["fractions"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(dele["deletion_auc"].numpy(),
                               np.trapezoid(dele["deletion"].numpy(), dele["fractions"].numpy(), axis=1), atol=1e-12)
    black = sa.measures.deletion(explainer, images[:2], steps=2, baseline="zero")
    with torch.no_grad():  # everything removed: the score of a black image, whatever the order
        p_black = torch.softmax(golden["runs"][name].eval()(torch.zeros(1, 3, 64, 64)), dim=1)[0]
    target = explainer(images[:2]).target
    np.testing.assert_allclose(black["deletion"][:, -1].numpy(), p_black[target].numpy(), atol=1e-6)

    noise = sa.measures.noise_reaction(explainer, images, amounts=(0.05, 0.25, 1.0), labels=labels,
                                       generator=torch.Generator().manual_seed(0))
    assert noise["amounts"] == [0.0, 0.05, 0.25, 1.0]
    assert noise["noise_score"].shape == (12, 4)
    np.testing.assert_allclose(noise["noise_score"][:, 0].numpy(), _expected(rows, name, "score"), atol=ATOL)
    np.testing.assert_allclose(noise["noise_ssim"][:, 0].numpy(), 1.0)
    for key in ("noise_score", "noise_ssim", "noise_entropy", "noise_correct"):
        auc = np.trapezoid(noise[key].numpy(), noise["amounts"], axis=1)
        np.testing.assert_allclose(noise["noise_auc_" + key[len("noise_"):]].numpy(), auc, rtol=0, atol=1e-12)


def test_human_agreement_equals_the_audit_rows(golden) -> None:
    rows, images, faces = golden["rows"], golden["images"], golden["faces"]
    name = "alpha-seed12"
    maps = sa.SalienceExtractor(golden["runs"][name], "gradcam")(images).maps.detach()
    has = np.array([s.human_map is not None for s in faces])
    human = torch.stack([load_map(s.human_map, 64) if s.human_map else torch.zeros(64, 64) for s in faces])
    out = sa.measures.human_agreement(maps, human.numpy(), has)  # numpy in: numpy out
    for key in ("human_ssim", "human_spearman"):
        expected = _expected(rows, name, key)
        got = out[key]
        assert np.isnan(got[~has]).all()
        np.testing.assert_allclose(got[has], expected, atol=ATOL)


def test_registry_lists_the_measures_with_their_metadata() -> None:
    names = sa.measures.names()
    assert names[:8] == ("detection", "entropy", "human", "noise", "transforms", "degradation", "deletion",
                         "stability")
    entropy = sa.measures.get("entropy")
    assert entropy.output("entropy_norm").better == "lower"
    assert entropy.output("entropy_norm").study == "lower"
    assert sa.measures.get("stability").needs.runs == 2
    assert sa.measures.get("human").needs.human_maps
    with pytest.raises(KeyError, match="unknown measure"):
        sa.measures.get("nope")


def test_help_lists_the_public_surface() -> None:
    import pydoc

    text = pydoc.render_doc(sa, renderer=pydoc.plaintext)
    for name in ("AuditModel", "SalienceExtractor", "load_run", "run_audit", "read_results", "measures"):
        assert name in text
    assert set(sa.__all__) >= {"measures", "AuditModel", "SalienceExtractor", "load_run", "run_audit", "read_results"}


def test_images_as_uint8_numpy(golden) -> None:
    explainer = sa.SalienceExtractor(golden["runs"]["alpha-seed11"], "gradcam")
    x = (golden["images"][:3].numpy() * 255).round().astype(np.uint8)
    out = sa.measures.equivariance(explainer, x)
    assert isinstance(out["invariance"], np.ndarray) and out["invariance"].shape == (3, 12)
    assert isinstance(out["all"]["equivariance"], np.ndarray)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        sa.measures.equivariance(explainer, x[:, :1])
    with pytest.raises(TypeError):
        sa.measures.entropy([[0.0]])


def test_user_stream_path_without_audit(tmp_path: Path) -> None:
    """The docstring example of salience_audit.measures runs as written."""
    maps = torch.rand(8, 7, 7)
    assert sa.measures.entropy(maps)["entropy_norm"].shape == (8,)
    assert sa.measures.stability([maps, torch.rand(8, 7, 7)])["stability_ssim"].shape == (8, 1)
