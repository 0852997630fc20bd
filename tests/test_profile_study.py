"""Profile ``study``: each convention of the original study's code against an oracle written here.

Oracles: a from-scratch Grad-CAM (activations after the in-place ReLU, gradients before it),
Pillow's own resize, scipy.ndimage.gaussian_filter on uint8 arrays in the study's per-level
loop, and skimage's float conversion for the noise script's round trip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from PIL import Image

from salience_audit.audit.conventions import Conventions
from salience_audit.errors import InputError
from salience_audit.measures.entropy import histogram_entropy
from salience_audit.perturb.noise import salt_and_pepper, uint8_round_trip
from salience_audit.perturb.study_blur import study_guided_blur, study_level_indices
from salience_audit.perturb.uint8_gaussian import uint8_gaussian_filter
from salience_audit.models.audit_model import AuditModel
from salience_audit.profiles import profile_of, require_same_profile
from salience_audit.salience.extract import SalienceExtractor
from salience_audit.salience.normalize import to_uint8_levels
from salience_audit.salience.pil_resize import pil_bicubic_resize_uint8

EXAMPLE_MAP = Path(__file__).resolve().parent / "data" / "study-example-map.json"


# ----------------------------------------------------------------------------- Grad-CAM


def _reference_gradcam_study_densenet(model: AuditModel, x01: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of torchvision's DenseNet written out: Z = features(x), A = ReLU(Z),
    w_k = mean dY_t/dZ_k (t = argmax), map = ReLU(sum_k w_k A_k), min-max normalised."""
    net = model.module
    z = net.features((x01 - model.mean) / model.std).detach().requires_grad_(True)
    a = torch.relu(z)
    logits = net.classifier(torch.flatten(F.adaptive_avg_pool2d(a, 1), 1))
    target = logits.argmax(dim=1, keepdim=True)
    (grad,) = torch.autograd.grad(logits.gather(1, target).sum(), z)
    cam = torch.relu((grad.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(dim=1))
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    return (cam - lo) / (hi - lo)


@pytest.fixture(scope="module")
def small_input() -> torch.Tensor:
    return torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(5))


def test_study_densenet_gradcam_equals_reference_with_pre_relu_gradients(small_input):
    torch.manual_seed(0)
    model = AuditModel.from_arch("densenet121", num_classes=2).eval()
    study = SalienceExtractor(model, "gradcam", grad_before_inplace=True)(small_input).maps
    default = SalienceExtractor(model, "gradcam")(small_input).maps
    reference = _reference_gradcam_study_densenet(model, small_input)
    assert study.shape == reference.shape == (2, 3, 3)
    assert float((study - reference).abs().max()) <= 1e-6
    # the artefact is real: the default (post-ReLU gradients) differs on random weights
    assert float((default - reference).abs().max()) > 1e-2


def test_study_resnet50_gradcam_equals_default(small_input):
    torch.manual_seed(1)
    model = AuditModel.from_arch("resnet50", num_classes=2).eval()
    study = SalienceExtractor(model, "gradcam", grad_before_inplace=True)(small_input).maps
    default = SalienceExtractor(model, "gradcam")(small_input).maps
    assert torch.equal(study, default)


def test_before_inplace_is_a_property_of_any_architecture():
    """A custom net with an in-place activation after its CAM layer behaves like DenseNet."""
    torch.manual_seed(2)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Conv2d(6, 5, 3, stride=4))
            self.fc = torch.nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = F.leaky_relu(self.body(x), 0.1, inplace=True)
            return self.fc(a.mean(dim=(2, 3)))

    model = AuditModel.from_module(Net(), cam_layer="body", input_size=32).eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    z = model.module.body((x - model.mean) / model.std).detach().requires_grad_(True)
    a = F.leaky_relu(z, 0.1)
    logits = model.module.fc(a.mean(dim=(2, 3)))
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), z)
    cam = torch.relu((grad.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(1))
    flat = cam.flatten(1)
    ref = (cam - flat.min(1).values[:, None, None]) / (flat.max(1).values - flat.min(1).values)[:, None, None]
    got = SalienceExtractor(model, "gradcam", grad_before_inplace=True)(x).maps
    assert float((got - ref).abs().max()) <= 1e-6


# ----------------------------------------------------------------------------- upscaling


def test_study_upscale_is_pil_bicubic_of_the_floored_map():
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((6, 7, 7)) ** 3).float()
    maps[0] = 0.0
    up = Conventions("study").upscale(maps, 224)
    q = (maps * 255.0).to(torch.uint8).numpy()  # torchvision's to_pil_image: mul(255).byte()
    expected = np.stack([np.asarray(Image.fromarray(m).resize((224, 224), Image.BICUBIC)) for m in q])
    assert np.array_equal(to_uint8_levels(up).numpy(), expected)


@pytest.mark.parametrize(("h", "w", "height", "width"), [(7, 7, 64, 64), (5, 9, 37, 101), (14, 14, 299, 299), (20, 20, 7, 7)])
def test_pil_resize_matches_pillow_exactly(h, w, height, width):
    rng = np.random.default_rng(h * w)
    q = rng.integers(0, 256, (4, h, w)).astype(np.uint8)
    got = pil_bicubic_resize_uint8(torch.from_numpy(q), (height, width)).numpy()
    expected = np.stack([np.asarray(Image.fromarray(m).resize((width, height), Image.BICUBIC)) for m in q])
    assert np.array_equal(got, expected)


def test_default_upscale_is_unchanged():
    maps = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    from salience_audit.salience.normalize import upscale

    assert torch.equal(Conventions("default").upscale(maps, 64), upscale(maps, 64))


# ----------------------------------------------------------------------------- uint8 filter and guided blur


@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.3, 5.0, 10.0])
def test_uint8_gaussian_equals_scipy_on_uint8(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    img = rng.integers(0, 256, (2, 40, 53)).astype(np.uint8)
    got = uint8_gaussian_filter(torch.from_numpy(img), sigma).numpy()
    expected = np.stack([ndi.gaussian_filter(im, sigma) for im in img])
    assert np.array_equal(got, expected)
    # and it is not the float filter: truncation darkens on average
    if sigma >= 1:
        assert got.mean() < np.stack([ndi.gaussian_filter(im.astype(float), sigma) for im in img]).mean() - 0.2


def _blob_maps(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx, s = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, rng.uniform(0.1, 0.3) * size
        out.append((np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)) * 255).astype(np.uint8))
    return np.stack(out)


def _reference_study_blur(image: np.ndarray, cam: np.ndarray, mode: str) -> np.ndarray:
    """Per channel: levels from the (inverted) uint8 map smoothed by scipy on uint8, then for every
    level the whole channel filtered on uint8 with sigma = 0.001 (10 - L)^4, copied where the level is."""
    stacked = cam if mode == "background" else 255 - cam
    smooth = ndi.gaussian_filter(stacked, 5)
    levels = np.around(smooth / (smooth.max() / 10), 1)
    out = image.copy()
    for c in range(image.shape[0]):
        for level in np.unique(levels):
            sigma = 0.001 * round(10 - level, 1) ** 4
            if sigma != 0:
                where = levels == level
                out[c][where] = ndi.gaussian_filter(image[c], sigma)[where]
    return out


@pytest.mark.parametrize("mode", ["background", "object"])
def test_study_guided_blur_equals_per_level_uint8_reference(mode):
    rng = np.random.default_rng(7 if mode == "object" else 8)
    size = 48
    images = rng.integers(0, 256, (3, 3, size, size)).astype(np.uint8)
    images[:, :, : size // 2] //= 3  # some structure, not only noise
    cams = _blob_maps(rng, 3, size)
    got = study_guided_blur(torch.from_numpy(images).float() / 255, torch.from_numpy(cams).float() / 255, mode)
    got_levels = torch.round(got * 255).numpy().astype(int)
    expected = np.stack([_reference_study_blur(im, cam, mode) for im, cam in zip(images, cams)]).astype(int)
    assert np.abs(got_levels - expected).max() <= 1
    assert not np.array_equal(got_levels, images)  # something was blurred


def test_study_object_levels_follow_the_inverted_map():
    """L = round(10 G' / max G', 1) with G' the smoothed inverted map; in float arithmetic G' = 255 - G
    so L = 10 (255 - G) / (255 - min G), which is not the default's 10 - 10 G / max G."""
    rng = np.random.default_rng(3)
    cams = _blob_maps(rng, 4, 40)
    k = study_level_indices(torch.from_numpy(cams), "object").numpy()
    for cam, ki in zip(cams, k):
        g_inv = ndi.gaussian_filter(255 - cam, 5).astype(float)
        assert np.array_equal(ki, np.rint(10 * g_inv / (g_inv.max() / 10)).astype(int))
        g = ndi.gaussian_filter(cam.astype(float), 5)
        study_float = 10 * (255 - g) / (255 - g.min())
        assert np.allclose(10 * (255 - g) / (255 - g.min()), 10 * (255 - g) / (255 - g).max())
        default = 10 - 10 * g / g.max()
        assert np.abs(study_float - default).max() > 0.05  # the two conventions differ
        assert np.abs(ki / 10 - study_float).max() <= 0.1  # truncation moves a level by at most one step here


def test_study_blur_of_an_empty_map_leaves_the_image():
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    out = study_guided_blur(x, torch.zeros(1, 20, 20), "background")
    assert torch.equal(torch.round(out * 255), torch.round(x * 255))


# ----------------------------------------------------------------------------- noise round trip


def test_noise_round_trip_matches_the_script():
    levels = np.arange(256, dtype=np.uint8)
    from skimage.util import img_as_float

    expected = (img_as_float(levels) * 255).astype(np.uint8)  # what the noise script saved at amount 0
    got = torch.round(uint8_round_trip(torch.from_numpy(levels).double() / 255) * 255).numpy().astype(np.uint8)
    assert np.array_equal(got, expected)
    assert int((expected != levels).sum()) == 24


def test_study_noise_is_salt_and_pepper_of_the_round_trip():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    conv = Conventions("study")
    a = conv.noisy(x, 0.25, torch.Generator().manual_seed(9))
    b = uint8_round_trip(salt_and_pepper(x, 0.25, torch.Generator().manual_seed(9)))
    assert torch.equal(a, b)
    assert torch.equal(conv.noisy(x, 0.0, None), uint8_round_trip(x))
    assert torch.equal(Conventions("default").noisy(x, 0.0, None), x)


# ----------------------------------------------------------------------------- entropy and profile bookkeeping


@pytest.mark.parametrize("profile", ["default", "study"])
def test_study_example_map_entropy(profile):
    data = json.loads(EXAMPLE_MAP.read_text(encoding="utf-8"))
    q = torch.tensor(data["levels"], dtype=torch.float32)
    maps01 = (q / 255.0).unsqueeze(0)  # the 8-bit PNG read back as [0, 1]
    assert Conventions(profile).profile == profile  # the entropy has no profile-dependent step
    bits = float(histogram_entropy(maps01)[0])
    assert round(bits, 5) == 3.04131
    from skimage.measure import shannon_entropy

    assert bits == pytest.approx(shannon_entropy(np.asarray(data["levels"], dtype=np.uint8)), abs=1e-12)


def test_profiles_of_old_audits_read_as_default_and_mixes_are_refused():
    assert profile_of({}) == "default"
    assert profile_of({"config": {"profile": "study"}}) == "study"
    assert require_same_profile({"profile": "study"}, {"profile": "study"}, "a", "b") == "study"
    with pytest.raises(InputError, match="different profiles"):
        require_same_profile({"profile": "study"}, {}, "audit-a", "audit-b")
    with pytest.raises(InputError, match="profile must be one of"):
        Conventions("paper")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the batch loop uses the profile


class _RecordingExtractor:
    """Stands in for a SalienceExtractor: records every batch it explains; maps = channel mean at 8x8."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, x01: torch.Tensor, target=None):
        from salience_audit.salience.extract import SalienceOutput

        self.seen.append(x01.clone())
        maps = F.adaptive_avg_pool2d(x01.mean(dim=1, keepdim=True), 8).squeeze(1)
        lo, hi = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
        logits = torch.stack([x01.mean(dim=(1, 2, 3)), 1 - x01.mean(dim=(1, 2, 3))], dim=1)
        return SalienceOutput(maps=(maps - lo) / (hi - lo), logits=logits, target=logits.argmax(1))


@pytest.mark.parametrize("profile", ["default", "study"])
def test_batch_auditor_takes_noise_and_blur_from_the_profile(profile):
    from salience_audit.audit.batch import BatchAuditor, BatchInput, RunExtractor
    from salience_audit.audit.config import AuditConfig
    from salience_audit.results.schema import RowBuffer

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    config = AuditConfig(measures=("noise", "degradation"), noise_levels=(0.0, 0.5), profile=profile, device="cpu")
    recorder = _RecordingExtractor()
    auditor = BatchAuditor([RunExtractor("r", recorder)], config, "d", "g", 32)  # type: ignore[arg-type]
    batch = BatchInput(images=x, labels=torch.tensor([0, 1]), indices=np.arange(2), paths=["a", "b"])
    auditor.process(batch, RowBuffer(), torch.Generator().manual_seed(0))
    conv = Conventions(profile)  # type: ignore[arg-type]
    seen = torch.cat(recorder.seen)
    # clean pass, then the noisy images (amount 0 only under study), then the two guided blurs
    amounts = (0.0, 0.5) if profile == "study" else (0.5,)
    expected_noisy = [conv.noisy(x, a, torch.Generator().manual_seed(0)) for a in amounts]
    maps_up = conv.upscale(_RecordingExtractor()(x).maps, 32)
    expected = [x, torch.cat(expected_noisy), *(conv.guided_blur(x, maps_up, m) for m in ("background", "object"))]
    assert torch.equal(seen, torch.cat(expected))


def test_uint8_gaussian_window_equals_the_cropped_full_filter():
    img = torch.randint(0, 256, (2, 3, 30, 41), generator=torch.Generator().manual_seed(6))
    full = uint8_gaussian_filter(img, 3.3)
    for window in ((0, 30, 0, 41), (5, 9, 0, 41), (0, 1, 40, 41), (12, 30, 3, 20)):
        top, bottom, left, right = window
        assert torch.equal(uint8_gaussian_filter(img, 3.3, window=window), full[..., top:bottom, left:right])
    with pytest.raises(ValueError, match="window"):
        uint8_gaussian_filter(img, 1.0, window=(5, 5, 0, 3))
