"""Device choice shared by training and auditing."""

from __future__ import annotations

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
