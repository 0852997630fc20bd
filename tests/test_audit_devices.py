"""Device plumbing of the audit worker that can be checked without a GPU."""

from __future__ import annotations

import pytest
import torch

from salience_audit.audit import worker
from salience_audit.audit.worker import RunRef, _keep_only_cached, resolve_device
from salience_audit.device import amp_dtype, autocast
from salience_audit.errors import InputError


def test_amp_dtype_is_bfloat16_where_supported_else_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    assert amp_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # before Ampere
    assert amp_dtype(torch.device("cuda")) == torch.float16


def test_autocast_none_is_full_precision() -> None:
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast(torch.device("cpu"), None):
        assert (a @ b).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16


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
