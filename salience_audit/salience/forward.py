"""Forward-only CAM, Grad-CAM, Grad-CAM++ and LayerCAM for heads that are ``linear(GAP(A))``.

Setting. ``A [B, K, h, w]`` is the output of the CAM layer as the autograd path sees it (after
any in-place activation applied to that very tensor), ``t`` the explained class and the head

    Y_t = sum_k W[t, k] * mean_ij f(A)_kij + b_t,        f = identity, or ReLU (an ``nn.ReLU``
                                                          module between the layer and the pooling)

so the gradient of the logit is known without a backward pass:

    g_kij = dY_t / dA_kij = c_k * m_kij,    c_k = W[t, k] / (h w),
    m_kij = 1 (f = identity)   or   1[A_kij > 0] (f = ReLU; ReLU's derivative at 0 is 0).

Closed forms (n_k = sum_ij m_kij positions where the gradient is not zero, n_k = h w without
the ReLU; rho_k = n_k / (h w); every map is then min-max normalised, a constant map -> 0):

- CAM:        M = sum_k W[t, k] A_k                              (no ReLU; unchanged)
- Grad-CAM:   alpha_k = mean_ij g_kij = c_k rho_k
              M = ReLU(sum_k c_k rho_k A_k)  ~  ReLU(sum_k W[t, k] rho_k A_k); with f = identity,
              rho_k = 1 and Grad-CAM is the rectified CAM.
- Grad-CAM++: where m_kij = 1 the gradient is the constant c_k, so the paper's
              alpha_kij = g^2 / (2 g^2 + g^3 sum_ab A_kab) = 1 / (2 + c_k sum_ab A_kab), and
              w_k = sum_ij alpha_kij ReLU(g_kij) = n_k ReLU(c_k) / (2 + c_k sum_ab A_kab)
              M = ReLU(sum_k w_k A_k)
              (the project's guard: a denominator 2 c^2 + c^3 sum A of magnitude <= 1e-8 is
              replaced by 1e-8, so alpha = c^2 / 1e-8 there).
- LayerCAM:   M = ReLU(sum_k ReLU(g_k) (.) A_k) = ReLU(sum_k ReLU(c_k) m_k (.) A_k)
              ~ ReLU(sum_k ReLU(W[t, k]) (m_k (.) A_k))   (1 / (h w) cancels in the normalisation).

The maps are computed under ``torch.inference_mode()`` from one forward pass; nothing is kept
for a backward pass. The implementation evaluates the per-position expressions on the
constant gradient tensor ``g`` (built as autograd builds it: ``W[t]`` expanded and divided by
``h w``, masked by ``A > 0`` after a ReLU), so that its float operations are those of the
autograd path and the maps agree with it to the last bit where the features agree; the cost
(a few element-wise operations on ``[B, K, h, w]``) is negligible beside the forward pass.

Which heads qualify (:func:`find_linear_head`): the registry must not mark the architecture
``cam_exact=False``; the modules that run after the CAM layer, observed in a forward pass,
must be at most an ``nn.ReLU``, a global average pooling (``nn.AdaptiveAvgPool2d`` to 1x1,
possibly inside timm's ``SelectAdaptivePool2d``), ``nn.Flatten`` / ``nn.Dropout`` /
``nn.Identity``, and last the model's classifier ``nn.Linear``; and the logits must equal
``W GAP(f(A)) + b`` numerically (this catches functional operations that no module shows;
checked on every batch). Anything else (an MLP head, a LayerNorm, a transformer's tokens)
is not forward-computable and the extractor uses autograd.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from salience_audit.device import autocast
from salience_audit.models.audit_model import AuditModel
from salience_audit.salience.cam import raw_class_activation_maps

__all__ = [
    "FORWARD_METHODS",
    "SALIENCE_PATHS",
    "ForwardCams",
    "LinearHead",
    "NotForwardComputable",
    "find_linear_head",
    "gradient_weights",
    "head_gradient",
    "maps_from_weights",
]

SALIENCE_PATHS: tuple[str, ...] = ("auto", "forward", "autograd")
"""``auto``: forward-only where the head allows it and verified; ``forward``: forced (error
when the head does not allow it); ``autograd``: always a backward pass."""

FORWARD_METHODS: frozenset[str] = frozenset({"cam", "gradcam", "gradcampp", "layercam"})

GRADCAMPP_EPS = 1e-8
"""Denominator guard of Grad-CAM++ (see :func:`gradient_weights`)."""

LOGIT_RTOL = 1e-3
"""``|logits - (W GAP(f(A)) + b)| <= LOGIT_RTOL * max(1, max |logits|)`` or the head is refused."""

AUTOCAST_LOGIT_EPS = 4
"""Under mixed precision the head's own pass rounds to the reduced dtype, so the relative
tolerance is ``max(LOGIT_RTOL, AUTOCAST_LOGIT_EPS * eps(dtype))`` (bfloat16: 0.031). The
structural question is settled in full precision by the extractor's first-batch check."""


def logit_rtol(autocast_dtype: torch.dtype | None) -> float:
    """Relative tolerance of :meth:`ForwardCams.check_logits` for passes in ``autocast_dtype``."""
    if autocast_dtype is None:
        return LOGIT_RTOL
    return max(LOGIT_RTOL, AUTOCAST_LOGIT_EPS * torch.finfo(autocast_dtype).eps)

# Modules that leave a tensor unchanged in eval mode, allowed anywhere in the head.
_PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


class NotForwardComputable(Exception):
    """The head after the CAM layer is not (ReLU) -> global average pooling -> linear."""


@dataclass(frozen=True)
class LinearHead:
    """A head ``logits = W GAP(f(A)) + b`` found after the CAM layer.

    Attributes:
        linear: the classifier ``nn.Linear`` (weights ``[C, K]``).
        relu: True when an ``nn.ReLU`` (not in place) sits between the layer and the pooling,
            so the gradient is masked by ``A > 0``.
        modules: the module types observed after the CAM layer, for messages.
    """

    linear: nn.Linear
    relu: bool
    modules: tuple[str, ...]


def _is_global_avg_pool(m: nn.Module) -> bool:
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = m.output_size
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        return all(s == 1 for s in sizes)
    return False


def find_linear_head(model: AuditModel, layer: nn.Module, x: Tensor) -> LinearHead:
    """Observe one forward pass of ``x[:1]`` and return the head after ``layer``, or raise.

    Raises :class:`NotForwardComputable` with the reason when the registry marks the head as
    not exact, when a module other than ReLU / global average pooling / flatten / dropout /
    identity runs between the layer and the classifier, or when the classifier is not the
    last module to run. The verdict is kept per model object and layer (a model's modules do
    not change), so later extractors of the same run (the gallery's) pass no image for it.
    """
    known = _HEADS.setdefault(model, {})
    key = (id(layer), model.cam_exact, model.classifier_layer)
    if key not in known:
        try:
            known[key] = _observe_head(model, layer, x)
        except NotForwardComputable as exc:
            known[key] = str(exc)
    found = known[key]
    if isinstance(found, str):
        raise NotForwardComputable(found)
    return found


_HEADS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], LinearHead | str]] = weakref.WeakKeyDictionary()
"""Per model object: (layer, cam_exact, classifier) -> its head, or why it is not forward-computable."""


def _observe_head(model: AuditModel, layer: nn.Module, x: Tensor) -> LinearHead:
    if model.cam_exact is False:
        raise NotForwardComputable(
            f"the registry marks the head of {model.arch} as not global average pooling + linear (cam_exact=False)"
        )
    if model.classifier_layer is None:
        raise NotForwardComputable("the model has no classifier nn.Linear")
    linear = model.resolve_layer(model.classifier_layer)
    if not isinstance(linear, nn.Linear):
        raise NotForwardComputable(f"the classifier {model.classifier_layer!r} is not an nn.Linear")
    order: list[nn.Module] = []
    layer_done = [False]

    def after(module: nn.Module, _inputs: Any, _output: Any) -> None:
        if module is layer:
            layer_done[0] = True
            order.clear()
        elif layer_done[0] and not any(True for _ in module.children()):
            order.append(module)

    handles = [m.register_forward_hook(after) for m in model.module.modules()]
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    names = tuple(type(m).__name__ for m in order)
    if not layer_done[0]:
        raise NotForwardComputable("the CAM layer did not run in the forward pass")
    if not order or order[-1] is not linear:
        raise NotForwardComputable(
            f"the classifier {model.classifier_layer!r} is not the last module to run after the CAM layer "
            f"(observed: {', '.join(names) or 'nothing'})"
        )
    relu = False
    pooled = False
    for m in order[:-1]:
        if isinstance(m, nn.ReLU) and not pooled and not relu:
            relu = not m.inplace  # an in-place ReLU rewrites A itself: the path sees the rectified A
        elif _is_global_avg_pool(m) and not pooled:
            pooled = True
        elif isinstance(m, _PASS_THROUGH):
            continue
        else:
            raise NotForwardComputable(
                f"a {type(m).__name__} runs between the CAM layer and the classifier "
                f"(head: {' -> '.join(names)}); only ReLU -> global average pooling -> linear is forward-computable"
            )
    return LinearHead(linear=linear, relu=relu, modules=names)


def head_gradient(features: Tensor, weight: Tensor, target: Tensor, relu: bool) -> Tensor:
    """``g = dY_t / dA`` ``[B, K, h, w]`` of a ``linear(GAP(f(A)))`` head, without autograd.

    ``g_kij = W[t, k] / (h w)`` (in ``A``'s dtype, as the mean's backward divides), times
    ``1[A_kij > 0]`` when ``relu`` (ReLU's backward keeps the gradient where its output is > 0).
    """
    b, k, h, w = features.shape
    wt = weight.detach().index_select(0, target.to(weight.device, torch.long)).to(features.device, features.dtype)
    g = wt.view(b, k, 1, 1).expand(b, k, h, w) / (h * w)
    if relu:
        g = torch.where(features > 0, g, torch.zeros((), dtype=g.dtype, device=g.device))
    return g


def gradient_weights(method: str, gradient: Tensor, features: Tensor) -> Tensor:
    """Per-channel (or per-position, LayerCAM) weights of a gradient method.

    - ``gradcam``: ``mean_ij g_kij`` ``[B, K]``.
    - ``gradcampp``: ``sum_ij alpha_kij ReLU(g_kij)`` with ``alpha = g^2 / d``,
      ``d = 2 g^2 + g^3 sum_ab A_kab`` (``d`` of magnitude <= 1e-8 replaced by 1e-8; alpha = 0
      where g = 0), Chattopadhay et al. eq. 19.
    - ``layercam``: ``ReLU(g)`` ``[B, K, h, w]``.

    The same function serves the autograd path (``g`` from a backward pass) and the forward
    path (``g`` from :func:`head_gradient`).
    """
    if method == "gradcam":
        return gradient.flatten(2).mean(-1)
    if method == "gradcampp":
        g2 = gradient.pow(2)
        spatial = (...,) + (None,) * (features.ndim - 2)
        denom = 2 * g2 + gradient.pow(3) * features.flatten(2).sum(-1)[spatial]
        denom = torch.where(denom.abs() > GRADCAMPP_EPS, denom, torch.full_like(denom, GRADCAMPP_EPS))
        alpha = torch.where(gradient != 0, g2 / denom, torch.zeros_like(g2))
        return (alpha * torch.relu(gradient)).flatten(2).sum(-1)
    if method == "layercam":
        return torch.relu(gradient)
    raise ValueError(f"no gradient weights for method {method!r}")


def maps_from_weights(weights: Tensor, features: Tensor) -> Tensor:
    """Un-normalised maps ``ReLU(sum_k w_k A_k)`` ``[B, h, w]`` (``w`` per channel or per position)."""
    missing = features.ndim - weights.ndim
    w = weights[(...,) + (None,) * missing]
    return torch.relu(torch.nansum(w * features, dim=1))


class ForwardCams:
    """Maps of one model, method and layer from forward passes alone.

    ``__call__(x, resolve_target)`` returns ``(raw maps [B, h, w], logits [B, C], target [B])``
    computed under ``torch.inference_mode()``; raw maps are not normalised (the extractor
    normalises every path the same way). The head is checked once (:func:`find_linear_head`)
    and the logits against ``W GAP(f(A)) + b`` on every call; both raise
    :class:`NotForwardComputable`.

    ``gradient_before_inplace_relu=True`` gives the maps of the convention that takes the
    gradient with respect to the tensor *before* an in-place ReLU that follows the layer (the
    original study's DenseNet-121 Grad-CAM, profile ``study``): a copy ``Z`` of the layer output is
    kept, and when the forward pass changed the output in place the gradient is masked by
    ``Z > 0`` as for a ReLU module, so Grad-CAM's ``alpha_k = c_k rho_k`` (``rho_k`` the fraction of
    positive positions); without an in-place change (ResNet's ``layer4``) nothing is masked.
    """

    def __init__(self, model: AuditModel, layer: nn.Module, method: str,
                 gradient_before_inplace_relu: bool = False) -> None:
        if method not in FORWARD_METHODS:
            raise NotForwardComputable(f"method {method!r} has no forward-only form")
        self.model = model
        self.layer = layer
        self.method = method
        self.gradient_before_inplace_relu = gradient_before_inplace_relu
        self.head: LinearHead | None = None

    def _capture(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        captured: list[Tensor] = []
        before: list[Tensor] = []

        def hook(_m: nn.Module, _i: Any, output: Any) -> None:
            captured.append(output)
            if self.gradient_before_inplace_relu and isinstance(output, Tensor):
                before.append(output.clone())

        handle = self.layer.register_forward_hook(hook)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if len(captured) != 1 or not isinstance(captured[0], Tensor) or captured[0].dim() != 4:
            shape = tuple(captured[0].shape) if captured and isinstance(captured[0], Tensor) else None
            raise NotForwardComputable(
                f"the CAM layer's output is not one spatial map [B, K, h, w] (got {shape}, {len(captured)} call(s))"
            )
        changed = before[0] if before and not torch.equal(before[0], captured[0]) else None
        return captured[0], logits, changed

    def check_logits(self, features: Tensor, logits: Tensor, autocast_dtype: torch.dtype | None = None) -> None:
        """Raise unless ``logits == W GAP(f(A)) + b`` within :func:`logit_rtol` (relative to the logits' scale)."""
        assert self.head is not None
        lin = self.head.linear
        f = torch.relu(features) if self.head.relu else features
        pooled = f.float().mean(dim=(2, 3))
        if lin.in_features != pooled.shape[1]:
            raise NotForwardComputable(f"the classifier takes {lin.in_features} inputs, the CAM layer has "
                                       f"{pooled.shape[1]} channels: the head is not linear(GAP(A))")
        pred = pooled @ lin.weight.detach().float().t()
        if lin.bias is not None:
            pred = pred + lin.bias.detach().float()
        ref = logits.float()
        if pred.shape != ref.shape:
            raise NotForwardComputable(f"the head maps {pooled.shape[1]} pooled channels to {tuple(pred.shape)}, "
                                       f"not to the logits {tuple(ref.shape)}")
        err = float((pred - ref).abs().max()) if ref.numel() else 0.0
        tol = logit_rtol(autocast_dtype) * max(1.0, float(ref.abs().max()) if ref.numel() else 1.0)
        if not err <= tol:  # also catches NaN
            raise NotForwardComputable(
                f"the logits are not W GAP(A) + b of the classifier (max difference {err:.3g} > {tol:.3g}): "
                "an operation in forward() that no module shows"
            )

    def __call__(self, x: Tensor, resolve_target: Any,
                 autocast_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Raw maps ``[B, h, w]`` (before normalisation), logits and targets of one forward pass.

        ``autocast_dtype``: the model pass runs under autocast in that precision (``--amp``); its
        features and logits are then taken to float32, so the closed forms run in float32.
        """
        with torch.inference_mode():
            if self.head is None:
                self.head = find_linear_head(self.model, self.layer, x)
            with autocast(x.device, autocast_dtype):
                features, logits, rewritten = self._capture(x)
            features, logits = features.float(), logits.float()
            rewritten = None if rewritten is None else rewritten.float()
            self.check_logits(features, logits, autocast_dtype)
            t = resolve_target(logits)
            if self.method == "cam":
                if self.head.relu:
                    raise NotForwardComputable("CAM weights the layer's output; a ReLU before the pooling makes it inexact")
                raw = raw_class_activation_maps(features, self.head.linear.weight.detach(), t)
            else:
                if rewritten is not None:  # gradient before the in-place ReLU: masked by Z > 0
                    g = head_gradient(rewritten, self.head.linear.weight, t, relu=True)
                else:
                    g = head_gradient(features, self.head.linear.weight, t, self.head.relu)
                raw = maps_from_weights(gradient_weights(self.method, g, features), features)
            raw = torch.nan_to_num(raw.float(), nan=0.0, posinf=0.0, neginf=0.0)
        # Outside inference mode, as ordinary tensors: callers may modify them in place.
        return raw.clone(), logits.clone(), t.clone()
