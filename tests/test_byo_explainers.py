"""Explainers from elsewhere: a user callable, Captum and pytorch-grad-cam, equal to the libraries' own output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from byo_fixtures import audit, image_tree, rows
from skimage.measure import shannon_entropy

from salience_audit.data.images import load_image
from salience_audit.models.audit_model import AuditModel
from salience_audit.salience.explainers import captum_explainer, grad_cam_explainer
from salience_audit.salience.extract import SalienceExtractor
from salience_audit.salience.normalize import minmax_normalize

captum_attr = pytest.importorskip("captum.attr")
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = AuditModel.from_arch("small_cnn", num_classes=2).eval()
    x = torch.rand(3, 3, 64, 64)
    target = torch.tensor([0, 1, 1])
    return model, x, target


def _ours(model, explainer, x, target):
    return SalienceExtractor(model, explainer)(x, target=target).maps


def test_pytorch_grad_cam_adapter_equals_the_library(setup) -> None:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, target = setup
    for cls in (pytorch_grad_cam.GradCAM, pytorch_grad_cam.GradCAMPlusPlus, pytorch_grad_cam.LayerCAM):
        with cls(model=model, target_layers=[model.resolve_layer(model.cam_layer)]) as cam:
            library = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in target])
        ours = _ours(model, grad_cam_explainer(cls), x, target)
        want = minmax_normalize(torch.from_numpy(library).float())
        assert ours.shape == (3, 64, 64)
        torch.testing.assert_close(ours, want, rtol=0, atol=1e-5)
        assert float(want.std()) > 0.01  # not a constant map


def test_captum_adapters_equal_the_library(setup) -> None:
    model, x, target = setup
    layer = model.resolve_layer(model.cam_layer)
    library = captum_attr.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    ours = _ours(model, captum_explainer(captum_attr.LayerGradCam, relu_attributions=True), x, target)
    torch.testing.assert_close(ours, minmax_normalize(library.detach().sum(1)), rtol=0, atol=1e-5)
    assert ours.shape == (3, 8, 8)
    library = captum_attr.IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    ours = _ours(model, captum_explainer("IntegratedGradients", n_steps=8, absolute=True), x, target)
    torch.testing.assert_close(ours, minmax_normalize(library.detach().abs().sum(1)), rtol=0, atol=1e-5)


def test_cli_method_imports_a_user_function_and_a_library_class(tmp_path, capsys, monkeypatch) -> None:
    import json

    data = image_tree(tmp_path / "data", ("real", "fake"), per_class=2, size=64)
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    torch.save(AuditModel.from_arch("small_cnn").module.state_dict(), run / "model.pt")
    (run / "run.json").write_text(json.dumps({"arch": "small_cnn", "name": "a"}))
    (tmp_path / "my_explainers.py").write_text(
        "import torch\n\n"
        "def channel_mean(model, images, target):\n"
        "    return torch.nn.functional.adaptive_avg_pool2d(images.mean(1, keepdim=True), 8)[:, 0].numpy()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["--group", f"g={run}", "--manifest", str(data), "--measures", "entropy", "--device", "cpu",
              "--no-report"]
    code, _, err = audit(capsys, *common, "--method", "my_explainers:channel_mean", "--out", str(tmp_path / "u"))
    assert code == 0, err
    got = rows(tmp_path / "u", "entropy")
    for _, row in got.iterrows():  # oracle: the same map computed here, its 8-bit histogram entropy
        image = load_image(data / row["path"], 64)
        m = minmax_normalize(torch.nn.functional.adaptive_avg_pool2d(image.mean(0, keepdim=True)[None], 8)[0])
        q = (m.numpy()[0] * 255).astype(np.uint8)
        assert row["value"] == pytest.approx(shannon_entropy(q), abs=1e-9)
    code, _, err = audit(capsys, *common, "--method", "pytorch_grad_cam:GradCAM", "--out", str(tmp_path / "lib"))
    assert code == 0, err
    assert len(rows(tmp_path / "lib", "entropy")) == 4
    code, _, err = audit(capsys, *common, "--method", "my_explainers:nothing", "--out", str(tmp_path / "bad"))
    assert code == 1 and "has no attribute 'nothing'" in err
