"""Forward-only CAM / Grad-CAM / Grad-CAM++ / LayerCAM: equal to the autograd path, closed forms, fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from salience_audit.errors import ModelError
from salience_audit.models import AuditModel
from salience_audit.salience.extract import FORWARD_TOLERANCE, SalienceExtractor
from salience_audit.salience.forward import NotForwardComputable, find_linear_head

FORWARD = ("cam", "gradcam", "gradcampp", "layercam")
# Small inputs keep the suite fast; inception_v3 needs 128 px for a 2x2 map of Mixed_7c.
SIZES = {"small_cnn": 64, "resnet18": 64, "resnet50": 64, "densenet121": 64, "efficientnet_b0": 64, "inception_v3": 128}


def _model(arch: str, seed: int, size: int = 64) -> AuditModel:
    """Random weights; batch-norm statistics taken from one batch, so that features keep unit scale
    through deep random networks (EfficientNet's logits are ~1e-13 with the initial statistics)."""
    torch.manual_seed(seed)
    m = AuditModel.from_arch(arch, name=f"{arch}-{seed}")
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = 1.0
    with torch.no_grad():
        m.train()(_images(4, size, 50 + seed))
        m.resolve_layer(m.classifier_layer).weight.normal_(0.0, 1.0)  # both classes get predicted
    return m.eval()


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(100 + seed))


@pytest.mark.parametrize("arch", list(SIZES))
def test_forward_only_equals_autograd(arch: str) -> None:
    for seed in (0, 1):
        model = _model(arch, seed, SIZES[arch])
        x = _images(3, SIZES[arch], seed)
        for method in FORWARD:
            ref = SalienceExtractor(model, method, path="autograd")(x)
            extractor = SalienceExtractor(model, method, path="auto")
            extractor(x)  # first batch: verified against autograd
            out = extractor(x)
            assert extractor.path_used == "forward", (arch, method, extractor.forward_verdict)
            assert extractor.forward_verdict is None
            assert torch.equal(out.target, ref.target)
            assert float((out.maps - ref.maps).abs().max()) <= FORWARD_TOLERANCE, (arch, seed, method)
            torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
            assert float(out.maps.max()) > 0.99  # not all-zero maps: the comparison means something
            forced = SalienceExtractor(model, method, path="forward")(x, target=1 - ref.target)
            ref_other = SalienceExtractor(model, method, path="autograd")(x, target=1 - ref.target)
            assert float((forced.maps - ref_other.maps).abs().max()) <= FORWARD_TOLERANCE


class ReluHead(nn.Module):
    """conv -> BN (the CAM layer, signed output) -> ReLU module -> GAP -> linear."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(self.act(self.bn(self.conv(x))))))


def _relu_model(inplace: bool, seed: int) -> AuditModel:
    torch.manual_seed(seed)
    return AuditModel.from_module(ReluHead(inplace), cam_layer="bn", input_size=32, classifier_layer="fc").eval()


def _closed_form(method: str, a: np.ndarray, w: np.ndarray, relu: bool) -> np.ndarray:
    """The docstring's closed forms in float64: a [B, K, h, w] features, w [B, K] = W[t]."""
    hw = a.shape[2] * a.shape[3]
    m = (a > 0).astype(np.float64) if relu else np.ones_like(a)
    c = w / hw
    if method == "cam":
        raw = np.einsum("bk,bkhw->bhw", w, a)
    elif method == "gradcam":
        rho = m.mean(axis=(2, 3))
        raw = np.maximum(np.einsum("bk,bkhw->bhw", c * rho, a), 0)
    elif method == "gradcampp":
        n = m.sum(axis=(2, 3))
        s = a.sum(axis=(2, 3))
        wk = n * np.maximum(c, 0) / (2 + c * s)
        raw = np.maximum(np.einsum("bk,bkhw->bhw", wk, a), 0)
    else:
        raw = np.maximum(np.einsum("bk,bkhw->bhw", np.maximum(w, 0), m * a), 0)
    lo = raw.min(axis=(1, 2), keepdims=True)
    span = raw.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 1e-12, (raw - lo) / np.where(span > 1e-12, span, 1), 0)


@pytest.mark.parametrize("inplace", [False, True])
def test_closed_forms_after_a_relu_module(inplace: bool) -> None:
    """A plain ReLU after the CAM layer: gradient masked by A > 0 (not in place), or A rewritten (in place)."""
    for seed in (0, 1, 2):
        model = _relu_model(inplace, seed)
        x = _images(4, 32, seed)
        head = find_linear_head(model, model.resolve_layer("bn"), x)
        assert head.relu is (not inplace) and head.modules[-1] == "Linear"
        store: dict[str, torch.Tensor] = {}
        handle = model.module.bn.register_forward_hook(lambda _m, _i, o: store.update(a=o))
        with torch.no_grad():
            logits = model(x)
        handle.remove()
        a = store["a"].double().numpy()  # after an in-place ReLU this tensor holds the rectified values
        target = logits.argmax(1).numpy()
        w = model.module.fc.weight.detach().double().numpy()[target]
        for method in FORWARD:
            if method == "cam" and not inplace:
                with pytest.raises(ModelError):
                    SalienceExtractor(model, method, path="forward")(x)
                continue
            ref = SalienceExtractor(model, method, path="autograd")(x)
            out = SalienceExtractor(model, method, path="forward")(x)
            expected = _closed_form(method, a, w, relu=not inplace)
            np.testing.assert_allclose(out.maps.numpy(), expected, atol=1e-5, err_msg=f"{method} seed {seed}")
            assert float((out.maps - ref.maps).abs().max()) <= FORWARD_TOLERANCE, (method, seed)


@pytest.mark.parametrize("arch, culprit", [("mobilenet_v3_large", "Hardswish"), ("convnext_tiny", "LayerNorm2d")])
def test_mlp_and_layernorm_heads_fall_back(arch: str, culprit: str, caplog: pytest.LogCaptureFixture) -> None:
    model = _model(arch, 0)
    x = _images(2, 64, 0)
    with caplog.at_level(logging.WARNING, logger="salience_audit.salience.extract"):
        extractor = SalienceExtractor(model, "gradcam")
        out = extractor(x)
        extractor(x)
    assert extractor.path_used == "autograd"
    assert "cam_exact=False" in (extractor.forward_verdict or "")
    lines = [r.getMessage() for r in caplog.records if "not forward-only" in r.getMessage()]
    assert len(lines) == 1 and arch in lines[0]  # one log line per run, not one per batch
    torch.testing.assert_close(out.maps, SalienceExtractor(model, "gradcam", path="autograd")(x).maps)
    with pytest.raises(ModelError, match="forward-only salience is not possible"):
        SalienceExtractor(model, "gradcam", path="forward")(x)
    # Without the registry's flag (a user's own module), the module structure alone refuses the head.
    bare = AuditModel.from_module(model.module, cam_layer=model.cam_layer, input_size=64,
                                  classifier_layer=model.classifier_layer)
    with pytest.raises(NotForwardComputable, match=culprit):
        find_linear_head(bare, bare.resolve_layer(bare.cam_layer), x)


class HiddenOp(nn.Module):
    """The CAM layer's output goes through an operation in forward() that no module shows."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(3, 6, 3, stride=4, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv(x))  # CAM layer: act (non-negative, many exact zeros)
        a = torch.relu(a) if self.op == "relu" else torch.tanh(a)
        return self.fc(self.pool(a).flatten(1))


def test_hidden_operation_is_caught(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    x = _images(4, 32, 0)
    # tanh changes the logits: the per-batch check of logits = W GAP(A) + b refuses the head.
    model = AuditModel.from_module(HiddenOp("tanh"), cam_layer="act", input_size=32, classifier_layer="fc").eval()
    extractor = SalienceExtractor(model, "gradcam")
    extractor(x)
    assert extractor.path_used == "autograd" and "logits are not W GAP(A) + b" in (extractor.forward_verdict or "")
    # A functional ReLU of a non-negative map leaves the logits alone but masks the gradient where
    # A == 0: only the comparison with autograd on the first batch can see it.
    torch.manual_seed(0)
    model = AuditModel.from_module(HiddenOp("relu"), cam_layer="act", input_size=32, classifier_layer="fc").eval()
    with caplog.at_level(logging.WARNING, logger="salience_audit.salience.extract"):
        extractor = SalienceExtractor(model, "gradcam")
        first = extractor(x)
    assert "differ from autograd" in (extractor.forward_verdict or "")
    assert any("differ from autograd" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(first.maps, SalienceExtractor(model, "gradcam", path="autograd")(x).maps)
    extractor(x)
    assert extractor.path_used == "autograd"


@pytest.mark.parametrize("pixels, grad_batches", [(2 * 32 * 32, [2, 2, 1]), (None, [5])])
def test_first_batch_check_covers_every_image_in_bounded_chunks(
    pixels: int | None, grad_batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs autograd on every image of the first batch, at most VERIFY_PIXELS input pixels
    per pass (the whole batch of small images at once), and catches a disagreement in the last image only."""
    from salience_audit.salience import extract

    if pixels is not None:
        monkeypatch.setitem(extract.VERIFY_PIXELS, "cpu", pixels)
    torch.manual_seed(0)
    model = AuditModel.from_module(HiddenOp("relu"), cam_layer="act", input_size=32, classifier_layer="fc").eval()
    seen: list[tuple[int, bool]] = []
    model.module.register_forward_pre_hook(lambda _m, args: seen.append((args[0].shape[0], torch.is_grad_enabled())))
    # Channel 0 of the CAM layer is ReLU(mean of the 3x3x3 patch - 0.1), the others ReLU(~5): on
    # images brighter than 0.5 nothing is 0, so the hidden ReLU masks no gradient; on the last image
    # (left half black) channel 0 is exactly 0 on the left half, where only autograd sees the mask.
    with torch.no_grad():
        model.module.conv.bias.fill_(5.0)
        model.module.conv.weight[0] = 1.0 / 27
        model.module.conv.bias[0] = -0.1
    x = 0.5 + 0.5 * torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x[4, :, :, :16] = 0.0
    extractor = SalienceExtractor(model, "gradcam")
    extractor(x)
    assert [n for n, grad in seen if grad][: len(grad_batches)] == grad_batches
    assert "differ from autograd" in (extractor.forward_verdict or "")
    # The same model and images without the last one pass the check: only image 4 disagreed.
    extract.forget_verdicts(model)
    checked = SalienceExtractor(model, "gradcam")
    checked(x[:4])
    assert checked.path_used == "forward" and checked.forward_verdict is None


def test_forward_path_keeps_nothing_for_backward() -> None:
    model = _model("small_cnn", 0)
    x = _images(2, 64, 0)
    out = SalienceExtractor(model, "gradcam", path="forward")(x)
    assert not out.maps.requires_grad and not out.logits.requires_grad
    assert out.maps.grad_fn is None and not out.maps.is_inference()
    out.maps.mul_(1.0)  # ordinary tensors: callers may modify them in place
    assert all(p.grad is None for p in model.parameters())


def test_unknown_path_is_refused() -> None:
    model = _model("small_cnn", 0)
    with pytest.raises(ModelError, match="unknown salience path"):
        SalienceExtractor(model, "gradcam", path="fast")
    with pytest.raises(ModelError, match="no forward-only form"):
        SalienceExtractor(model, "scorecam", path="forward")


def test_gradient_before_an_inplace_relu() -> None:
    """The study's DenseNet convention: dY/dA taken before the in-place ReLU, by a tensor hook (autograd oracle)."""
    from salience_audit.salience.forward import ForwardCams
    from salience_audit.salience.normalize import minmax_normalize

    for seed in (0, 1):
        model = _relu_model(inplace=True, seed=seed)
        x = _images(4, 32, seed)
        store: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            store["a"] = out
            out.register_hook(lambda g: store.__setitem__("g", g))  # fires with the gradient before the ReLU

        handle = model.module.bn.register_forward_hook(hook)
        logits = model(x.clone().requires_grad_(True))
        handle.remove()
        target = logits.argmax(1)
        logits.gather(1, target[:, None]).sum().backward()
        a, g = store["a"].detach(), store["g"]  # a holds the rectified values (in-place)
        assert bool((g[a == 0] == 0).all()) and bool((g != 0).any())
        expected = minmax_normalize(torch.relu((g.mean(dim=(2, 3))[:, :, None, None] * a).sum(1)))
        cams = ForwardCams(model, model.resolve_layer("bn"), "gradcam", gradient_before_inplace_relu=True)
        raw, _, t = cams(x, lambda lg: lg.argmax(1))
        assert torch.equal(t, target)
        torch.testing.assert_close(minmax_normalize(raw), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["densenet121", "resnet18"])
def test_study_convention_forward_equals_autograd(arch: str) -> None:
    """Profile ``study`` (gradient before DenseNet's in-place ReLU; nothing to mask for ResNet's layer4)."""
    model = _model(arch, 0)
    x = _images(3, 64, 0)
    for method in ("gradcam", "gradcampp", "layercam"):
        ref = SalienceExtractor(model, method, path="autograd", grad_before_inplace=True)(x)
        extractor = SalienceExtractor(model, method, grad_before_inplace=True)
        extractor(x)
        out = extractor(x)
        assert extractor.path_used == "forward", extractor.forward_verdict
        assert float((out.maps - ref.maps).abs().max()) <= FORWARD_TOLERANCE, method
    if arch == "densenet121":  # the convention matters there: the two profiles give different Grad-CAM maps
        plain = SalienceExtractor(model, "gradcam", path="autograd")(x).maps
        study = SalienceExtractor(model, "gradcam", path="forward", grad_before_inplace=True)(x).maps
        assert float((plain - study).abs().max()) > 1e-3


def test_head_is_observed_once_per_model() -> None:
    """A second extractor of the same run (e.g. the gallery's) does not run an image through it to find its head."""
    model = _model("resnet18", 0)
    calls: list[int] = []
    model.module.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    x = _images(3, 64, 0)
    SalienceExtractor(model, "gradcam", path="forward")(x)
    first = list(calls)
    calls.clear()
    SalienceExtractor(model, "gradcam", path="forward")(x)
    assert first == [1, 3] and calls == [3]  # head observed on one image, once; then one pass of the batch
