"""NumPy in, NumPy out: the measure functions accept arrays as well as tensors.

Maps made elsewhere (another explainer, files) are often NumPy arrays. A function wrapped
by :func:`accepts_numpy` converts every ``np.ndarray`` argument to a CPU tensor of the
same dtype (boolean arrays become float64; a list or tuple of arrays becomes one of tensors) and, when at
least one argument was an array, converts every tensor in the result back to ``np.ndarray`` (tuples, lists
and dicts are walked). Tensor calls are
unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["accepts_numpy"]

F = TypeVar("F", bound=Callable[..., Any])


def _to_tensor(value: Any) -> tuple[Any, bool]:
    if isinstance(value, np.ndarray):
        arr = value.astype(np.float64) if value.dtype == np.bool_ else value
        return torch.from_numpy(np.ascontiguousarray(arr)), True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return type(value)(_to_tensor(v)[0] for v in value), True
    return value, False


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def accepts_numpy(fn: F) -> F:
    """Let ``fn`` take NumPy arrays wherever it takes tensors (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        converted = [_to_tensor(a) for a in args]
        kw = {k: _to_tensor(v) for k, v in kwargs.items()}
        any_numpy = any(flag for _, flag in converted) or any(flag for _, flag in kw.values())
        out = fn(*(a for a, _ in converted), **{k: v for k, (v, _) in kw.items()})
        return _to_numpy(out) if any_numpy else out

    return wrapper  # type: ignore[return-value]
