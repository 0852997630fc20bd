"""Mixed precision (``--amp``) and channels-last on any device: what the passes run in, and the maps they give."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from salience_audit.audit import worker
from salience_audit.audit.batch import BatchAuditor, BatchInput, RunExtractor
from salience_audit.audit.config import AuditConfig
from salience_audit.models import AuditModel
from salience_audit.results.schema import RowBuffer
from salience_audit.salience.extract import SalienceExtractor
from test_salience_forward import _images, _model  # random models with unit-scale features

BF16 = torch.bfloat16


def _minmax(maps: Tensor) -> Tensor:
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(maps))


def _autocast_features(model: AuditModel, x: Tensor) -> tuple[Tensor, Tensor]:
    """The CAM layer's output and the logits of one pass under bfloat16 autocast, by hand."""
    seen: list[Tensor] = []
    handle = model.resolve_layer(model.cam_layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
            logits = model(x)
    finally:
        handle.remove()
    return seen[0], logits


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_amp_forward_maps_are_the_closed_form_of_the_autocast_features(method: str) -> None:
    """ResNet-18's head is linear(GAP(A)) without a ReLU, so CAM = sum_k W[t, k] A_k and Grad-CAM =
    ReLU(CAM), min-max normalised; A taken from a bfloat16 pass and the sum done in float32."""
    model = _model("resnet18", 0)
    x = _images(4, 64, 1)
    features, logits = _autocast_features(model, x)
    assert features.dtype == BF16
    target = logits.float().argmax(dim=1)
    weight = model.resolve_layer(model.classifier_layer).weight.detach()[target]
    cam = torch.einsum("bk,bkhw->bhw", weight, features.float())
    expected = _minmax(cam if method == "cam" else torch.relu(cam))

    extractor = SalienceExtractor(model, method, path="auto", autocast_dtype=BF16)
    out = extractor(x)
    assert extractor.path_used == "forward" and extractor.forward_verdict is None
    assert out.maps.dtype == torch.float32 and out.logits.dtype == torch.float32
    assert torch.equal(out.logits, logits.float())
    assert torch.equal(out.target, target)
    torch.testing.assert_close(out.maps, expected, rtol=0, atol=1e-6)
    assert float(out.maps.max()) == 1.0


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "small_cnn"])
def test_amp_keeps_the_forward_path_its_check_runs_in_full_precision(arch: str, caplog) -> None:  # type: ignore[no-untyped-def]
    """Under autocast the forward and autograd maps differ by more than FORWARD_TOLERANCE (their
    roundings differ), so a check run in reduced precision would always fall back to autograd."""
    model = _model(arch, 0)
    x = _images(3, 64, 2)
    with caplog.at_level(logging.WARNING, logger="salience_audit.salience.extract"):
        extractor = SalienceExtractor(model, "gradcam", path="auto", autocast_dtype=BF16)
        first = extractor(x)
        assert extractor.path_used == "forward", extractor.forward_verdict
        second = extractor(x)
    assert extractor.path_used == "forward" and not caplog.records
    assert torch.equal(first.maps, second.maps)  # the first batch's result is the AMP pass, not the check's
    full = SalienceExtractor(model, "gradcam", path="autograd")(x)
    assert not torch.equal(first.logits, full.logits)  # the passes did run in reduced precision


def test_logits_run_in_the_extractors_precision_and_layout() -> None:
    model = _model("resnet18", 0)
    x = _images(3, 64, 3)
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cpu", dtype=BF16):
            reduced = model(x)
    assert torch.equal(SalienceExtractor(model, "gradcam").logits(x), full)
    amp = SalienceExtractor(model, "gradcam", autocast_dtype=BF16).logits(x)
    assert amp.dtype == torch.float32 and torch.equal(amp, reduced.float()) and not torch.equal(amp, full)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "small_cnn"])
def test_channels_last_maps_equal_contiguous_maps(arch: str) -> None:
    model = _model(arch, 0)
    x = _images(3, 64, 4)
    reference = SalienceExtractor(model, "gradcam", path="autograd")(x)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    layouts: list[bool] = []
    handle = first_conv.register_forward_pre_hook(
        lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        model.to(memory_format=torch.channels_last)
        extractor = SalienceExtractor(model, "gradcam", channels_last=True)
        extractor(x)
        out = extractor(x)
        logits = extractor.logits(x)
    finally:
        handle.remove()
        model.to(memory_format=torch.contiguous_format)
    assert layouts and all(layouts)  # every pass, the check's included, got channels-last images
    assert x.is_contiguous()  # the caller's images are not converted in place
    assert extractor.path_used == "forward"
    assert torch.equal(out.target, reference.target)
    # Only float rounding changes (oneDNN sums in another order); min-max normalisation of these
    # 2x2 maps magnifies it to 4.5e-5 on resnet18.
    torch.testing.assert_close(out.maps, reference.maps, rtol=0, atol=1e-4)
    torch.testing.assert_close(logits, reference.logits, rtol=1e-4, atol=1e-4)


class _PassRecorder:
    """Forward hook on a model's first convolution: (output dtype, input channels-last) of every pass."""

    def __init__(self, model: AuditModel) -> None:
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        self.passes: list[tuple[torch.dtype, bool]] = []
        self.handle = conv.register_forward_hook(self._record)

    def _record(self, _m: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        self.passes.append((out.dtype, args[0].is_contiguous(memory_format=torch.channels_last)))


@pytest.mark.parametrize(("amp", "channels_last"), [(True, True), (False, False), (True, False)])
def test_every_pass_of_the_batch_loop_runs_in_the_audits_settings(amp: bool, channels_last: bool) -> None:
    """Clean maps, noisy / transformed / blurred variants and the deletion scoring passes (plain
    forwards, not maps) all go through the extractor's precision and layout."""
    models = [_model("small_cnn", seed) for seed in (0, 1)]
    config = AuditConfig(measures=("entropy", "noise", "transforms", "stability", "degradation", "deletion"),
                         device="cpu", amp=amp, channels_last=channels_last, deletion_steps=2, noise_levels=(0.1,))
    runs = [RunExtractor(m.name, worker.build_extractor(m, config, torch.device("cpu"))) for m in models]
    auditor = BatchAuditor(runs, config, "d", "g", 64)
    x = _images(4, 64, 5)
    batch = BatchInput(images=x, labels=torch.tensor([0, 1, 0, 1]), indices=np.arange(4), paths=list("abcd"))
    auditor.process(batch, RowBuffer(), torch.Generator().manual_seed(0))  # first batch: the full-precision check
    recorders = [_PassRecorder(m) for m in models]
    try:
        rows = RowBuffer()
        auditor.process(batch, rows, torch.Generator().manual_seed(0))
    finally:
        for r in recorders:
            r.handle.remove()
    expected = (BF16 if amp else torch.float32, channels_last)
    for r in recorders:
        # passes of up to 32 images: clean 1, noise 1 (4 images), transforms 2 (48), the two guided
        # blurs 1 (8), deletion 2 (steps + 1) - 2 = 4 scoring passes (8 images each)
        assert len(r.passes) >= 9
        assert set(r.passes) == {expected}
    assert len(rows) > 0


def test_build_extractor_sets_the_memory_format_either_way() -> None:
    """A cached model converted by a channels-last audit is converted back for the next audit."""
    model = _model("small_cnn", 0)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    worker.build_extractor(model, AuditConfig(device="cpu", channels_last=True), torch.device("cpu"))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    extractor = worker.build_extractor(model, AuditConfig(device="cpu"), torch.device("cpu"))
    assert conv.weight.is_contiguous() and not extractor.channels_last and extractor.autocast_dtype is None


def test_amp_on_a_cpu_without_native_bfloat16_says_so_once(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(worker, "cpu_has_fast_bfloat16", lambda: False)
    worker._warn_slow_cpu_bfloat16.cache_clear()
    model = _model("small_cnn", 0)
    config = AuditConfig(device="cpu", amp=True)
    try:
        with caplog.at_level(logging.WARNING, logger="salience_audit.audit.worker"):
            for _ in range(2):
                extractor = worker.build_extractor(model, config, torch.device("cpu"))
    finally:
        worker._warn_slow_cpu_bfloat16.cache_clear()
    assert extractor.autocast_dtype == BF16
    assert [r.getMessage() for r in caplog.records] == [
        "--amp: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); PyTorch emulates it, so mixed precision "
        "makes the passes slower here, not faster"]


def test_channels_last_images_made_under_inference_mode_reach_autograd() -> None:
    """An inference tensor cannot be saved for backward: the extractor copies one even when it is
    already channels-last, so the autograd path (and the forward path's check) works on it."""
    model = _model("small_cnn", 0).to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            x = _images(2, 64, 6).contiguous(memory_format=torch.channels_last)
        for path in ("autograd", "auto"):
            out = SalienceExtractor(model, "gradcam", path=path, channels_last=True)(x)
            assert out.maps.shape == (2, 8, 8)
    finally:
        model.to(memory_format=torch.contiguous_format)
