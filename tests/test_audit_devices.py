"""Device plumbing of the audit worker that can be checked without a GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from salience_audit.audit import worker
from salience_audit.audit.worker import RunRef, _AutocastExtractor, _keep_only_cached, resolve_device
from salience_audit.errors import InputError
from salience_audit.models.audit_model import AuditModel
from salience_audit.salience.extract import SalienceExtractor


def test_autocast_wrapper_returns_float32_maps_and_keeps_the_model() -> None:
    torch.manual_seed(0)
    model = AuditModel.from_arch("small_cnn", weights=None).eval()
    x = torch.rand(3, 3, 64, 64)
    plain = SalienceExtractor(model, "gradcam")
    wrapped = _AutocastExtractor(SalienceExtractor(model, "gradcam"))
    assert wrapped.model is model  # BatchAuditor's deletion curves call the model directly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available, disabling autocast" on CPU machines
        out = wrapped(x)
    ref = plain(x)
    assert out.maps.dtype == torch.float32 and out.logits.dtype == torch.float32
    if not torch.cuda.is_available():  # autocast is off on the CPU: identical results
        torch.testing.assert_close(out.maps, ref.maps, rtol=0, atol=0)
        torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    wrapped.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_an_error() -> None:
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")


def test_model_cache_keeps_one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: dict[str, object] = {}
    monkeypatch.setattr(worker, "_MODEL_CACHE", cache)
    cpu = torch.device("cpu")
    old = [RunRef("a", path="/runs/a"), RunRef("b", path="/runs/b")]
    new = [RunRef("c", path="/runs/c"), RunRef("a", path="/runs/a")]
    for ref in old:
        cache[ref.cache_key(cpu)] = object()
    _keep_only_cached(new, cpu)
    assert set(cache) == {old[0].cache_key(cpu)}
