"""Batched, differentiable class activation maps (Zhou et al., 2016).

For features ``A [B, K, h, w]`` of the last spatial block and classifier weights
``W [C, K]`` of a head ``logits = W GAP(A) + b``, the CAM of image ``i`` for its target
class ``t_i`` is

    M_i(x, y) = sum_k W[t_i, k] * A_i[k, x, y]          (no bias, no ReLU)
    S_i = (M_i - min M_i) / (max M_i - min M_i)         (constant map -> zeros)

Everything stays in the autograd graph, so ``S`` can enter a training loss.
"""

from __future__ import annotations

from types import TracebackType

import torch
from torch import Tensor, nn

from salience_audit.salience.normalize import minmax_normalize

__all__ = ["CamHook", "class_activation_maps", "raw_class_activation_maps"]


def _check(features: Tensor, weights: Tensor, target: Tensor) -> Tensor:
    if features.dim() != 4:
        raise ValueError(f"features must be [B, K, h, w], got {tuple(features.shape)}")
    if weights.dim() == 4 and weights.shape[-2:] == (1, 1):  # 1x1 conv classifier
        weights = weights.flatten(1)
    if weights.dim() != 2 or weights.shape[1] != features.shape[1]:
        raise ValueError(
            f"weights must be [C, K] with K = {features.shape[1]} feature channels, got {tuple(weights.shape)}"
        )
    if target.dim() != 1 or target.shape[0] != features.shape[0]:
        raise ValueError(f"target must be [B] with B = {features.shape[0]}, got {tuple(target.shape)}")
    return weights


def raw_class_activation_maps(features: Tensor, weights: Tensor, target: Tensor) -> Tensor:
    """Un-normalised CAMs ``M_i = sum_k W[t_i, k] A_i[k]``: ``[B, h, w]``, differentiable."""
    weights = _check(features, weights, target)
    w = weights.index_select(0, target.to(device=weights.device, dtype=torch.long))
    return torch.einsum("bk,bkhw->bhw", w.to(device=features.device, dtype=features.dtype), features)


def class_activation_maps(features: Tensor, weights: Tensor, target: Tensor) -> Tensor:
    """Min-max normalised CAMs ``[B, h, w]`` in [0, 1] (see module docstring), differentiable.

    Args:
        features: ``[B, K, h, w]`` output of the CAM layer (after any in-place activation).
        weights: ``[C, K]`` classifier weights (a ``[C, K, 1, 1]`` 1x1-conv weight is accepted).
        target: ``[B]`` class index per image.
    """
    return minmax_normalize(raw_class_activation_maps(features, weights, target))


class CamHook:
    """Context manager capturing a layer's output during forward passes, graph included.

    Example (training loss)::

        with CamHook(model.resolve_layer(model.cam_layer)) as hook:
            logits = model(x01)
        cams = class_activation_maps(hook.features, model.classifier_weight(), logits.argmax(1))

    The hook is removed on exit; ``features`` holds the output of the last forward.
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self._features: Tensor | None = None
        self._handle = None

    def _hook(self, _module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"CAM layer returned {type(output).__name__}, expected a tensor")
        self._features = output  # no detach / clone: keeps the graph and in-place activations

    @property
    def features(self) -> Tensor:
        """Output of the hooked layer in the last forward pass."""
        if self._features is None:
            raise RuntimeError("no forward pass went through the hooked layer")
        return self._features

    def register(self) -> CamHook:
        """Attach the forward hook (done by ``__enter__``)."""
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def remove(self) -> None:
        """Detach the hook (idempotent); captured features are kept."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def clear(self) -> None:
        """Forget the captured features (frees the graph they reference)."""
        self._features = None

    def __enter__(self) -> CamHook:
        return self.register()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
