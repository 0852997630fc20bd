"""Salience maps: hand-written CAM, torchcam-backed methods, hooks hygiene, precomputed maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchcam.methods import CAM

from salience_audit.errors import InputError, ModelError
from salience_audit.models import AuditModel
from salience_audit.salience.cam import CamHook, class_activation_maps
from salience_audit.salience.extract import METHODS, SalienceExtractor
from salience_audit.salience.normalize import minmax_normalize
from salience_audit.salience.precomputed import read_map, read_maps

TORCHCAM_METHODS = ("gradcam", "gradcampp", "layercam", "scorecam")


@pytest.fixture()
def model() -> AuditModel:
    """small_cnn at 64 px (8x8 maps) with a classifier large enough to predict both classes."""
    torch.manual_seed(0)
    m = AuditModel.from_arch("small_cnn")
    with torch.no_grad():
        m.module.classifier.weight.normal_(0.0, 1.0)
    return m.eval()


@pytest.fixture()
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(4, 3, 64, 64)


def _features_numpy(model: AuditModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Features of the CAM layer and logits, captured with a plain forward hook."""
    store: dict[str, torch.Tensor] = {}
    handle = model.module.features.register_forward_hook(lambda m, i, o: store.update(a=o.detach().clone()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return store["a"].numpy().astype(np.float64), logits.numpy()


def _minmax_np(maps: np.ndarray) -> np.ndarray:
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    return (maps - lo) / (hi - lo)


def _hooks(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules()
    )


# --------------------------------------------------------------------------- CAM
def test_cam_equals_independent_computation(model: AuditModel, images: torch.Tensor) -> None:
    feats, logits = _features_numpy(model, images)
    w = model.module.classifier.weight.detach().numpy().astype(np.float64)
    b = model.module.classifier.bias.detach().numpy().astype(np.float64)
    # The head is exactly linear in the pooled features, so CAM is exact.
    np.testing.assert_allclose(feats.mean(axis=(2, 3)) @ w.T + b, logits, rtol=1e-4, atol=1e-5)
    target = logits.argmax(1)
    expected = _minmax_np(np.einsum("bk,bkhw->bhw", w[target], feats))
    out = SalienceExtractor(model, "cam")(images)
    assert out.maps.shape == (4, 8, 8)
    assert out.target.tolist() == target.tolist()
    np.testing.assert_allclose(out.maps.numpy(), expected, atol=1e-5)


def test_cam_equals_torchcam_cam(model: AuditModel, images: torch.Tensor) -> None:
    ours = SalienceExtractor(model, "cam")(images)
    with CAM(model.module, "features", "classifier") as extractor:
        with torch.no_grad():
            model(images)
        raw = extractor(class_idx=ours.target.tolist(), normalized=False)[0]
        theirs = extractor(class_idx=ours.target.tolist())[0]  # (M - min) / (max - min + 1e-8)
    torch.testing.assert_close(ours.maps, minmax_normalize(raw), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.maps, theirs, atol=1e-5, rtol=0)


def test_cam_is_differentiable(model: AuditModel, images: torch.Tensor) -> None:
    out = SalienceExtractor(model, "cam")(images, create_graph=True)
    assert out.maps.requires_grad and out.logits.requires_grad
    loss = (out.maps - torch.rand_like(out.maps)).pow(2).mean()
    loss.backward()
    conv = model.module.features[0][0].weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    assert model.module.classifier.weight.grad.abs().sum() > 0


def test_cam_hook_for_training(model: AuditModel, images: torch.Tensor) -> None:
    model.train()
    with CamHook(model.resolve_layer(model.cam_layer)) as hook:
        logits = model(images)
    assert _hooks(model) == 0
    cams = class_activation_maps(hook.features, model.classifier_weight(), logits.argmax(1))
    assert cams.shape == (4, 8, 8) and cams.requires_grad
    cams.sum().backward()
    assert model.module.stem[0][0].weight.grad is not None


def test_cam_refused_for_inexact_heads(images: torch.Tensor) -> None:
    with pytest.raises(ModelError, match="not exact"):
        SalienceExtractor(AuditModel.from_arch("mobilenet_v3_large"), "cam")

    class FlatHead(nn.Module):  # conv -> flatten -> linear: no global pooling
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=8, padding=1), nn.ReLU())
            self.fc = nn.Linear(4 * 8 * 8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))

    m = AuditModel.from_module(FlatHead(), cam_layer="conv", input_size=64)
    with pytest.raises(ModelError, match="not be exact"):
        SalienceExtractor(m, "cam")(images)
    assert SalienceExtractor(m, "gradcam")(images).maps.shape == (4, 8, 8)


# --------------------------------------------------------------------------- torchcam methods
@pytest.mark.parametrize("method", TORCHCAM_METHODS)
def test_methods_batched_equal_single(method: str, model: AuditModel, images: torch.Tensor) -> None:
    extractor = SalienceExtractor(model, method)
    out = extractor(images)
    assert out.maps.shape == (4, 8, 8) and out.logits.shape == (4, 2) and out.target.shape == (4,)
    assert torch.isfinite(out.maps).all()
    assert out.maps.min() >= 0 and out.maps.max() <= 1
    assert not out.maps.requires_grad
    singles = torch.cat([extractor(images[i : i + 1]).maps for i in range(4)])
    torch.testing.assert_close(out.maps, singles, atol=1e-5, rtol=1e-4)


def test_gradcam_equals_manual(model: AuditModel, images: torch.Tensor) -> None:
    out = SalienceExtractor(model, "gradcam")(images)
    with CamHook(model.module.features) as hook:
        logits = model(images)
    feats = hook.features
    (grad,) = torch.autograd.grad(logits.gather(1, out.target[:, None]).sum(), feats)
    expected = minmax_normalize(torch.relu((grad.mean(dim=(2, 3))[:, :, None, None] * feats).sum(1)))
    torch.testing.assert_close(out.maps, expected.detach(), atol=1e-5, rtol=1e-4)


def test_gradcampp_follows_paper(model: AuditModel, images: torch.Tensor) -> None:
    """With a GAP + linear head, dY_t/dA_kij = W[t, k] / (h w) everywhere, so
    alpha = 1 / (2 + g_k sum_ab A_kab) and w_k = h w ReLU(g_k) / (2 + g_k sum_ab A_kab)."""
    out = SalienceExtractor(model, "gradcampp")(images)
    feats, _ = _features_numpy(model, images)
    w = model.module.classifier.weight.detach().numpy().astype(np.float64)
    hw = feats.shape[2] * feats.shape[3]
    g = w[out.target.numpy()] / hw  # [B, K]
    weights = hw * np.maximum(g, 0) / (2 + g * feats.sum(axis=(2, 3)))
    expected = _minmax_np(np.maximum(np.einsum("bk,bkhw->bhw", weights, feats), 0))
    np.testing.assert_allclose(out.maps.numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_target_changes_map(method: str, model: AuditModel, images: torch.Tensor) -> None:
    extractor = SalienceExtractor(model, method)
    predicted = extractor(images)
    other = 1 - predicted.target
    chosen = extractor(images, target=other)
    assert torch.equal(chosen.target, other)
    torch.testing.assert_close(chosen.logits, predicted.logits)
    assert not torch.allclose(chosen.maps, predicted.maps, atol=1e-3)


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp", "layercam"])
def test_constant_maps_are_zeros(method: str, model: AuditModel, images: torch.Tensor) -> None:
    with torch.no_grad():
        model.module.classifier.weight.zero_()
    out = SalienceExtractor(model, method)(images)
    assert torch.isfinite(out.maps).all() and torch.count_nonzero(out.maps) == 0
    assert torch.count_nonzero(minmax_normalize(torch.full((2, 3, 3), 0.7))) == 0


@pytest.mark.parametrize("method", METHODS)
def test_no_side_effects(method: str, model: AuditModel, images: torch.Tensor) -> None:
    model.train()
    model.module.features[1].eval()  # a mixed-mode model must get its own flags back
    running = model.module.features[0][1].running_mean.clone()
    with SalienceExtractor(model, method) as extractor:
        extractor(images)
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.module.stem.training and not model.module.features[1].training
    assert torch.equal(model.module.features[0][1].running_mean, running)  # ran in eval mode
    with pytest.raises(ModelError, match="closed"):
        extractor(images)


@pytest.mark.parametrize("method", ["cam", "gradcam", "scorecam"])
def test_works_under_no_grad_and_inference_mode(method: str, model: AuditModel, images: torch.Tensor) -> None:
    reference = SalienceExtractor(model, method)(images).maps
    with torch.no_grad():
        torch.testing.assert_close(SalienceExtractor(model, method)(images).maps, reference)
    with torch.inference_mode():
        torch.testing.assert_close(SalienceExtractor(model, method)(images.clone()).maps, reference)


def test_errors(model: AuditModel, images: torch.Tensor) -> None:
    with pytest.raises(ModelError, match="known methods"):
        SalienceExtractor(model, "gradcam3")
    with pytest.raises(ModelError, match="create_graph"):
        SalienceExtractor(model, "gradcam")(images, create_graph=True)
    with pytest.raises(InputError, match="classes"):
        SalienceExtractor(model, "gradcam")(images, target=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        SalienceExtractor(model, "cam")(images[:, :1])
    with pytest.raises(ModelError, match="not a spatial map"):
        SalienceExtractor(model, "gradcam", layer="pool")(images)
    assert _hooks(model) == 0


# --------------------------------------------------------------------------- precomputed maps
def test_read_maps_8_and_16_bit(tmp_path: Path) -> None:
    a8 = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    a16 = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(a8).save(tmp_path / "a.png")
    Image.fromarray(a16).save(tmp_path / "b.png")
    maps = read_maps([tmp_path / "a.png", tmp_path / "b.png"])
    assert maps.shape == (2, 8, 8) and maps.dtype == torch.float32
    np.testing.assert_allclose(maps[0].numpy(), a8 / 255.0, atol=1e-6)
    np.testing.assert_allclose(maps[1].numpy(), a16 / 65535.0, atol=1e-6)  # intensities kept, max < 1
    norm = read_maps([tmp_path / "a.png", tmp_path / "b.png"], normalize=True)
    assert float(norm[1].max()) == pytest.approx(1.0) and float(norm[1].min()) == 0.0
    small = read_maps([tmp_path / "a.png"], size=4)
    assert small.shape == (1, 4, 4) and 0 <= float(small.min()) <= float(small.max()) <= 1
    assert read_map(tmp_path / "a.png", size=(2, 3)).shape == (2, 3)


def test_read_maps_colour_and_errors(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.warns(UserWarning, match="converted to grayscale"):
        m = read_maps([tmp_path / "rgb.png"])
    assert m.shape == (1, 8, 8) and float(m.max()) == pytest.approx(round(0.587 * 200) / 255, abs=2 / 255)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(InputError, match="bad.png"):
        read_maps([tmp_path / "rgb.png", tmp_path / "bad.png"])
    with pytest.raises(InputError, match="gone.png.*not found"):
        read_maps([tmp_path / "gone.png"])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "five.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(InputError, match="five.png.*size"):
        read_maps([tmp_path / "eight.png", tmp_path / "five.png"])
