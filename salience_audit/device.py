"""Device choice and mixed precision, shared by training and auditing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from salience_audit.errors import InputError


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; other values go to ``torch.device``.

    Asking for CUDA on a machine without it is an :class:`InputError`, not a silent fallback.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def amp_dtype(device: torch.device) -> torch.dtype:
    """The reduced precision of mixed-precision model passes (``--amp``) on ``device``.

    bfloat16 (float32's exponent range, so logits and activations cannot overflow where float32
    does not) on the CPU and on GPUs that support it; float16 on older CUDA GPUs.
    """
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def cpu_has_fast_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (AVX-512 BF16 or AMX).

    Without it PyTorch emulates bfloat16 on the CPU, and ``--amp`` makes passes slower, not faster.
    """
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe()) if probe is not None else False


@contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision on ``device`` with ``dtype`` (``torch.autocast``); ``None``: full precision."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield
