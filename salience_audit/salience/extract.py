"""Salience maps of a whole batch, one call: ``SalienceExtractor(model, method)(x01, target)``.

Methods (``A`` = output ``[B, K, h, w]`` of the model's CAM layer, ``Y_t`` = logit of the target
class, ``g = dY_t / dA``; every map is min-max normalised per image at ``h x w``, a
constant map becoming zeros):

- ``cam``: ``sum_k W[t, k] A_k`` with ``W`` the classifier weights (hand-written, batched,
  differentiable with ``create_graph=True``; no ReLU, no bias). Only for exact-CAM heads.
- ``gradcam``: ``ReLU(sum_k mean_ij(g_k) A_k)`` (torchcam ``GradCAM``).
- ``gradcampp``: ``ReLU(sum_k w_k A_k)``, ``w_k = sum_ij alpha_kij ReLU(g_kij)``,
  ``alpha = g^2 / (2 g^2 + g^3 sum_ab A_kab)`` (Chattopadhay et al., eq. 19; torchcam hooks with
  corrected weights, see ``_GradCAMpp``).
- ``layercam``: ``ReLU(sum_k ReLU(g_k) * A_k)`` (torchcam ``LayerCAM``).
- ``scorecam``: ``ReLU(sum_k softmax_k(Y_t(M_k x) - Y_t(x)) A_k)`` with ``M_k`` the upsampled,
  min-max normalised ``A_k`` (torchcam ``ScoreCAM``; B*K extra forward passes, chunked).

Any other explainer: ``method`` may also be a callable ``(model, images, target) -> maps [B, h, w]``
or a ``package.module:function`` / ``file.py:function`` string naming one (Captum and
pytorch-grad-cam classes are wrapped by their adapters; see :mod:`salience_audit.salience.explainers`);
its maps are min-max normalised per image like those of the built-in methods; non-finite values are refused.

The extractor puts the model in eval mode during a call and restores every module's mode
afterwards, registers its hooks only for the duration of a call, and never accumulates
parameter gradients (gradients are taken with ``torch.autograd.grad`` w.r.t. the CAM layer).

Salience path (``path``): ``cam``, ``gradcam``, ``gradcampp`` and ``layercam`` of a model whose
head is global average pooling + linear are computed from one forward pass under
``torch.inference_mode()`` (closed forms in :mod:`salience_audit.salience.forward`). With
``auto`` (default) the first call for a model checks those maps, for every image of that
batch, against the autograd path run a few images at a time (``VERIFY_PIXELS``; max difference <=
``FORWARD_TOLERANCE`` after normalisation, same target classes) and falls
back to autograd, with one log line, when they disagree or the head is anything else; the
verdict is kept per model object. ``forward`` forces the forward path (a ``ModelError`` when
the head does not allow it; no comparison), ``autograd`` always runs a backward pass.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torchcam.methods import GradCAM, GradCAMpp, LayerCAM, ScoreCAM

from salience_audit.device import autocast
from salience_audit.errors import InputError, ModelError
from salience_audit.models.audit_model import AuditModel
from salience_audit.models.scores import synthetic_probability
from salience_audit.salience.cam import CamHook, class_activation_maps
from salience_audit.salience.forward import (
    FORWARD_METHODS,
    SALIENCE_PATHS,
    ForwardCams,
    NotForwardComputable,
    gradient_weights,
)
from salience_audit.salience.normalize import minmax_normalize

__all__ = ["FORWARD_TOLERANCE", "METHODS", "SALIENCE_PATHS", "SalienceExtractor", "SalienceOutput", "forget_verdicts"]

logger = logging.getLogger(__name__)

FORWARD_TOLERANCE = 1e-5
"""Largest difference, after min-max normalisation, between forward-only and autograd maps."""

VERIFY_PIXELS: dict[str, int] = {"cpu": 224 * 224, "other": 32 * 224 * 224}
"""Input pixels per autograd pass when a model's first batch is checked against the forward path, per device type.

The check keeps activations for backward, which the forward path never does. On the CPU one
224-px image per pass keeps it below the forward pass's own peak (measured on a 10-run
DenseNet-121 audit of 16 images: 1.51 GB peak at one image per pass, 1.75 GB at two, 1.75 GB
at four); 64-px inputs go 12 at a time. Accelerators take 32 such images per pass."""

# Per model object: (method, layer, gradient before in-place activation) -> None (forward path verified) or the reason it is not used.
_VERDICTS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str], str | None]] = weakref.WeakKeyDictionary()

METHODS: tuple[str, ...] = ("cam", "gradcam", "gradcampp", "layercam", "scorecam")
GRADIENT_METHODS: frozenset[str] = frozenset({"gradcam", "gradcampp", "layercam"})


class _GradCAMpp(GradCAMpp):
    """torchcam's Grad-CAM++ hooks and backprop with the weights of the paper.

    torchcam 0.5.0 computes ``alpha[mask].div_(...)`` on a boolean-indexed *copy*, so its alpha
    stays ``g^2``, and its denominator uses ``sum_ab A_ab g_ab^3`` instead of the paper's
    ``g_ij^3 sum_ab A_ab``. Here:

        alpha_kij = g_kij^2 / (2 g_kij^2 + g_kij^3 sum_ab A_kab)   (0 where g_kij = 0)
        w_k = sum_ij alpha_kij ReLU(g_kij)
    """

    def _get_weights(self, class_idx: Any, scores: Tensor, **kwargs: Any) -> list[Tensor]:
        kwargs.pop("eps", None)  # the guard is GRADCAMPP_EPS of salience.forward
        self._backprop(scores, class_idx, **kwargs)
        weights = []
        for act, grad in zip(self.hook_a, self.hook_g, strict=True):
            assert act is not None and grad is not None
            weights.append(gradient_weights("gradcampp", grad, act))
        return weights


_TORCHCAM: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcampp": _GradCAMpp,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
}


class _GradientBeforeInplace:
    """Mixin for torchcam's gradient methods: differentiate the target layer's output *before*
    any in-place operation that follows it, and read the activations *after* it.

    This is what torchcam 0.3 did (a tensor hook on the layer output, which torchvision's
    DenseNet then passes through ``F.relu(..., inplace=True)``), and so what the original study's
    DenseNet-121 maps are: with A = ReLU(Z) the post-activation tensor and Z the layer output,

        w_k = mean_ij dY_t / dZ_kij = mean_ij 1[Z_kij > 0] dY_t / dA_kij,   map = ReLU(sum_k w_k A_k).

    Done without an old torchcam: the last forward hook hands the rest of the network a copy of
    the output, so an in-place activation downstream changes the copy (read as activations)
    while the gradient is taken with respect to the untouched original. Without an in-place
    operation after the layer (ResNet's ``layer4``), copy and original hold the same values and
    the maps equal those of the plain torchcam class.
    """

    def _hook_g(self, _module: nn.Module, _input: tuple[Tensor, ...], output: Tensor, idx: int = 0) -> Tensor | None:
        if not self._hooks_enabled:  # type: ignore[attr-defined]
            return None
        downstream = output.clone()
        self._hook_outputs[idx] = output  # type: ignore[attr-defined]
        self.hook_a[idx] = downstream.detach()  # type: ignore[attr-defined]  # shares storage: sees in-place ops
        return downstream


_TORCHCAM_BEFORE_INPLACE: dict[str, type] = {
    name: type(f"{cls.__name__}BeforeInplace", (_GradientBeforeInplace, cls), {})
    for name, cls in _TORCHCAM.items()
    if name in GRADIENT_METHODS
}


@dataclass(frozen=True)
class SalienceOutput:
    """Result of one extractor call.

    Attributes:
        maps: ``[B, h, w]`` in [0, 1], min-max normalised per map (constant -> zeros).
        logits: ``[B, C]`` logits of the clean forward pass (detached unless ``create_graph``).
        target: ``[B]`` int64 class whose map was computed.
    """

    maps: Tensor
    logits: Tensor
    target: Tensor

    @property
    def scores(self) -> Tensor:
        """Probability of class 1 ("Synthetic"): ``softmax(logits)[:, 1]``."""
        return synthetic_probability(self.logits)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's own flag afterwards.

    A model already in eval mode throughout (the audit's case) is left untouched: walking
    and re-setting every submodule's flag would cost more than a small model's pass.
    """
    modes = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in modes):
        yield
        return
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def forget_verdicts(model: nn.Module) -> None:
    """Forget whether the forward path was verified for ``model`` (the next call verifies again)."""
    _VERDICTS.pop(model, None)


class SalienceExtractor:
    """Batched salience maps of an :class:`AuditModel` at the resolution of its CAM layer.

    Args:
        model: the wrapped classifier (its ``cam_layer``/``classifier_layer`` are used).
        method: one of :data:`METHODS`.
        layer: dotted layer name overriding ``model.cam_layer``.
        scorecam_batch_size: masked images per forward pass for ``scorecam``.
        grad_before_inplace: gradient methods differentiate the CAM layer's output before an
            in-place activation that follows it (activations still read after it), as torchcam
            0.3 and so the original study did (profile ``study``; see ``_GradientBeforeInplace``).
            False (default): activations and gradients both of the post-activation tensor.
        path: ``auto``, ``forward`` or ``autograd`` (see the module docstring).
        autocast_dtype: mixed precision (``--amp``): the model passes run under ``torch.autocast``
            in this dtype (:func:`salience_audit.device.amp_dtype`); the forward path takes the
            features to float32 before its closed forms, and maps and logits come back as float32.
            ``None`` (default): full precision. The check of the forward path against autograd
            (``auto``) always runs in full precision: it asks whether the head allows the closed
            forms, not how much reduced precision changes the maps.
        channels_last: images enter the model in the channels-last memory format (convert the
            model with ``model.to(memory_format=torch.channels_last)``); callers and measures keep
            their own images' layout.

    Usable as a context manager; no hook outlives a call, so ``close()`` only marks the
    extractor as closed.
    """

    def __init__(
        self,
        model: AuditModel,
        method: str | Callable[..., Any] = "gradcam",
        layer: str | None = None,
        scorecam_batch_size: int = 64,
        grad_before_inplace: bool = False,
        path: str = "auto",
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> None:
        self.explainer: Callable[..., Any] | None = None
        if callable(method) or (isinstance(method, str) and ":" in method):
            from salience_audit.salience.explainers import resolve_explainer

            self.explainer = resolve_explainer(method) if isinstance(method, str) else method
            name = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
            method = str(name)
        elif method not in METHODS:
            raise ModelError(f"unknown salience method {method!r}; known methods: {', '.join(METHODS)}, "
                             "or package.module:function for your own explainer")
        if path not in SALIENCE_PATHS:
            raise ModelError(f"unknown salience path {path!r}; choose one of {', '.join(SALIENCE_PATHS)}")
        if path == "forward" and (self.explainer is not None or method not in FORWARD_METHODS):
            raise ModelError(f"method {method!r} has no forward-only form; use path 'auto' or 'autograd'")
        if not isinstance(model, AuditModel):
            raise ModelError("SalienceExtractor needs an AuditModel (see AuditModel.from_module)")
        self.model = model
        self.method = method
        self.layer_name = layer or model.cam_layer
        self.layer = model.resolve_layer(self.layer_name)
        self.scorecam_batch_size = int(scorecam_batch_size)
        self.grad_before_inplace = bool(grad_before_inplace)
        self.path = path
        self.autocast_dtype = autocast_dtype
        self.channels_last = bool(channels_last)
        forwardable = self.explainer is None and method in FORWARD_METHODS and path != "autograd"
        self._forward = ForwardCams(model, self.layer, method, self.grad_before_inplace) if forwardable else None
        self.path_used: str | None = None
        """``forward`` or ``autograd``: the path of the last call."""
        self._closed = False
        if method == "cam":
            if model.cam_exact is False:
                raise ModelError(
                    f"{model.name} ({model.arch}): CAM from the classifier weights is not exact for this "
                    "head (it is not a single linear layer after global average pooling); use a gradient "
                    "method such as 'gradcam'"
                )
            if layer is not None and layer != model.cam_layer:
                raise ModelError("method 'cam' uses the model's cam_layer (the block before global pooling)")
            model.classifier_weight()  # raises ModelError when there is no classifier layer

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Mark the extractor closed (hooks never outlive a call)."""
        self._closed = True

    def __enter__(self) -> SalienceExtractor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SalienceExtractor(model={self.model.name!r}, method={self.method!r}, layer={self.layer_name!r})"

    # ------------------------------------------------------------------ helpers
    def _prepare(self, x01: Tensor) -> Tensor:
        if not isinstance(x01, Tensor) or x01.dim() != 4 or x01.shape[1] != 3:
            shape = tuple(x01.shape) if isinstance(x01, Tensor) else type(x01).__name__
            raise InputError(f"expected images [B, 3, H, W] in [0, 1], got {shape}")
        if not x01.is_floating_point():
            raise InputError(f"expected float images in [0, 1], got dtype {x01.dtype}")
        param = next(self.model.parameters(), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else x01.dtype
        x = x01.detach().to(device=self.model.device, dtype=dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a copy unless already channels-last
        return x.clone() if x.is_inference() else x

    @staticmethod
    def _resolve_target(logits: Tensor, target: Tensor | Sequence[int] | None) -> Tensor:
        if target is None:
            return logits.detach().argmax(dim=1)
        t = torch.as_tensor(target, device=logits.device).to(torch.long).flatten()
        if t.shape[0] != logits.shape[0]:
            raise InputError(f"target has {t.shape[0]} entries for a batch of {logits.shape[0]}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= logits.shape[1]):
            raise InputError(f"target classes must be in [0, {logits.shape[1] - 1}], got {t.tolist()}")
        return t

    def _check_spatial(self, features: Tensor | None) -> Tensor:
        if not isinstance(features, Tensor) or features.dim() != 4 or features.shape[-2:].numel() < 2:
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ModelError(
                f"{self.model.name}: layer {self.layer_name!r} gives {shape}, not a spatial map [B, K, h, w]; "
                "choose a convolutional block with more than 1x1 output as cam_layer (or a larger input)"
            )
        return features

    def _verify_exact_cam(self, features: Tensor, logits: Tensor, weight: Tensor) -> None:
        """For models of unknown head, check logits == W GAP(A) + b before trusting CAM."""
        head = self.model.resolve_layer(self.model.classifier_layer or "")
        pooled = features.detach().float().mean(dim=(2, 3))
        w = weight.detach().float().flatten(1)
        ref = logits.detach().float()
        exact = w.shape[1] == pooled.shape[1]
        if exact:
            pred = pooled @ w.t()
            if getattr(head, "bias", None) is not None:
                pred = pred + head.bias.detach().float()
            tol = 1e-3 * max(1.0, float(ref.abs().max()))
            exact = pred.shape == ref.shape and float((pred - ref).abs().max()) <= tol
        if not exact:
            raise ModelError(
                f"{self.model.name}: logits are not classifier({self.model.classifier_layer!r}) applied to the "
                f"global average of {self.layer_name!r}, so CAM would not be exact; use a gradient method "
                "such as 'gradcam', or pass the right cam_layer / classifier_layer"
            )
        self.model.cam_exact = True

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        x01: Tensor,
        target: Tensor | Sequence[int] | None = None,
        create_graph: bool = False,
    ) -> SalienceOutput:
        """Maps ``[B, h, w]`` of images ``x01 [B, 3, H, W]`` in [0, 1] for ``target`` (default: argmax).

        ``create_graph=True`` (``cam`` only) keeps maps and logits in the autograd graph.
        """
        if self._closed:
            raise ModelError("this SalienceExtractor was closed")
        if create_graph and self.method != "cam":
            raise ModelError(f"create_graph=True is only supported by method 'cam', not {self.method!r}")
        if self._forward is not None and not create_graph:
            out = self._forward_path(x01, target)
            if out is not None:
                self.path_used = "forward"
                return out
        self.path_used = "autograd"
        return self._autograd_path(x01, target, create_graph, self.autocast_dtype)

    def logits(self, x01: Tensor) -> Tensor:
        """Float32 logits ``[B, C]`` of one plain forward pass (no map), in the extractor's precision."""
        with torch.no_grad(), eval_mode(self.model):
            x = self._prepare(x01)
            with autocast(x.device, self.autocast_dtype):
                logits = self.model(x)
        return logits.float()

    def _autograd_path(
        self, x01: Tensor, target: Tensor | Sequence[int] | None, create_graph: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> SalienceOutput:
        # Gradient methods need autograd even when called under no_grad / inference_mode.
        with torch.inference_mode(False), eval_mode(self.model):
            x = self._prepare(x01)
            with autocast(x.device, autocast_dtype):
                if self.explainer is not None:
                    out = self._custom(x, target)
                elif self.method == "cam":
                    out = self._cam(x, target, create_graph)
                else:
                    out = self._torchcam(x, target)
        if autocast_dtype is None:
            return out
        return SalienceOutput(maps=out.maps.float(), logits=out.logits.float(), target=out.target)

    # ------------------------------------------------------------------ forward-only path
    @property
    def forward_verdict(self) -> str | None:
        """None while the forward path is usable (or untested), else why it is not used."""
        if self._forward is None:
            return "path 'autograd' requested" if self.path == "autograd" else f"no forward-only form of {self.method!r}"
        return _VERDICTS.get(self.model, {}).get(self._verdict_key)

    @property
    def _verdict_key(self) -> tuple[str, str, bool]:
        return (self.method, self.layer_name, self.grad_before_inplace)

    def _fall_back(self, reason: str) -> None:
        _VERDICTS.setdefault(self.model, {})[self._verdict_key] = reason
        logger.warning("%s (%s, %s): salience from autograd, not forward-only: %s",
                       self.model.name, self.model.arch, self.method, reason)

    def _forward_path(self, x01: Tensor, target: Tensor | Sequence[int] | None) -> SalienceOutput | None:
        """Maps from one forward pass, or None when the autograd path must be used (see module docstring)."""
        assert self._forward is not None
        verdicts = _VERDICTS.setdefault(self.model, {})
        key = self._verdict_key
        if self.path == "auto" and verdicts.get(key) is not None:
            return None
        try:
            out = self._forward_output(x01, target, self.autocast_dtype)
        except NotForwardComputable as exc:
            if self.path == "forward":
                raise ModelError(f"{self.model.name} ({self.model.arch}): forward-only salience is not "
                                 f"possible: {exc}; use the salience path 'auto' or 'autograd'") from exc
            self._fall_back(str(exc))
            return None
        if self.path == "auto" and key not in verdicts:
            problem, diff = self._compare_with_autograd(x01, target, out if self.autocast_dtype is None else None)
            if problem is not None:
                self._fall_back(problem)
                return self._autograd_path(x01, target, autocast_dtype=self.autocast_dtype)
            verdicts[key] = None
            logger.info("%s (%s, %s): forward-only salience (head %s; first batch equal to autograd within %.1g)",
                        self.model.name, self.model.arch, self.method,
                        " -> ".join(self._forward.head.modules) if self._forward.head else "?", diff)
        return out

    def _forward_output(self, x01: Tensor, target: Tensor | Sequence[int] | None,
                        autocast_dtype: torch.dtype | None = None) -> SalienceOutput:
        """The forward-only maps (min-max normalised), logits and targets; raises ``NotForwardComputable``."""
        assert self._forward is not None
        with eval_mode(self.model):
            x = self._prepare(x01)
            raw, logits, t = self._forward(x, lambda lg: self._resolve_target(lg, target), autocast_dtype)
        return SalienceOutput(maps=minmax_normalize(raw), logits=logits, target=t)

    def _compare_with_autograd(
        self, x01: Tensor, target: Tensor | Sequence[int] | None, out: SalienceOutput | None
    ) -> tuple[str | None, float]:
        """Forward-only against autograd maps on every image of the batch: (why they disagree or None, max |diff|).

        Both paths in full precision. ``out`` is the full-precision forward pass of the whole
        batch (None: run it again, as under mixed precision). When the batch is larger than
        :data:`VERIFY_PIXELS` allows, both paths run again on the same chunks, so the comparison
        is of like with like (a convolution's float rounding may depend on the batch size) and
        the autograd pass keeps the activations of a few images only.
        """
        targets = None if target is None else torch.as_tensor(target).flatten()
        pixels = int(x01.shape[-2]) * int(x01.shape[-1])
        chunk = max(1, VERIFY_PIXELS["cpu" if self.model.device.type == "cpu" else "other"] // max(pixels, 1))
        worst = 0.0
        for start in range(0, int(x01.shape[0]), chunk):
            part = slice(start, start + chunk)
            part_target = None if targets is None else targets[part]
            if chunk >= x01.shape[0] and out is not None:
                fwd = out
            else:
                try:
                    fwd = self._forward_output(x01[part], part_target)
                except NotForwardComputable as exc:
                    return str(exc), worst
            ref = self._autograd_path(x01[part], part_target)
            if not torch.equal(ref.target, fwd.target):
                return "the forward pass chose other target classes than the autograd pass", worst
            diff = float((ref.maps.detach() - fwd.maps).abs().max()) if fwd.maps.numel() else 0.0
            if not diff <= FORWARD_TOLERANCE:  # NaN fails too
                return (f"forward-only maps differ from autograd maps by {diff:.2g} (> {FORWARD_TOLERANCE:g}) "
                        "on the first batch"), diff
            worst = max(worst, diff)
        return None, worst

    def _cam(self, x: Tensor, target: Tensor | Sequence[int] | None, create_graph: bool) -> SalienceOutput:
        weight = self.model.classifier_weight()
        with torch.set_grad_enabled(create_graph), CamHook(self.layer) as hook:
            logits = self.model(x)
            features = self._check_spatial(hook.features)
            t = self._resolve_target(logits, target)
            if self.model.cam_exact is None:
                self._verify_exact_cam(features, logits, weight)
            try:
                maps = class_activation_maps(features, weight, t)
            except ValueError as exc:
                raise ModelError(f"{self.model.name}: cannot compute CAM: {exc}") from exc
        if not create_graph:
            logits, maps = logits.detach(), maps.detach()
        return SalienceOutput(maps=maps, logits=logits, target=t)

    def _custom(self, x: Tensor, target: Tensor | Sequence[int] | None) -> SalienceOutput:
        """Maps of a user explainer ``(model, images, target) -> [B, h, w]``, min-max normalised."""
        assert self.explainer is not None
        with torch.no_grad():
            logits = self.model(x)
        t = self._resolve_target(logits, target)
        with torch.enable_grad():  # gradient explainers work even when called under no_grad
            raw = self.explainer(self.model, x, t)
        maps = torch.as_tensor(raw.detach() if isinstance(raw, Tensor) else raw).to(x.device, torch.float32)
        if maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if maps.dim() != 3 or maps.shape[0] != x.shape[0]:
            raise ModelError(f"explainer {self.method!r} returned maps of shape {tuple(maps.shape)}; "
                             f"expected [B, h, w] with B = {x.shape[0]}")
        if not bool(torch.isfinite(maps).all()):
            raise ModelError(f"explainer {self.method!r} returned non-finite values (NaN or infinity)")
        return SalienceOutput(maps=minmax_normalize(maps), logits=logits.detach(), target=t)

    def _torchcam(self, x: Tensor, target: Tensor | Sequence[int] | None) -> SalienceOutput:
        classes = _TORCHCAM_BEFORE_INPLACE if self.grad_before_inplace else _TORCHCAM
        cls = classes.get(self.method, _TORCHCAM[self.method])
        kwargs: dict[str, Any] = {"input_shape": tuple(x.shape[1:])}
        if self.method == "scorecam":
            kwargs["batch_size"] = self.scorecam_batch_size
        gradient = self.method in GRADIENT_METHODS
        # torchcam hooks the inner module, so Score-CAM masks the *normalised* input
        # (masked-out pixels take the dataset mean colour), as in the original method.
        with cls(self.model.module, target_layer=self.layer, **kwargs) as extractor:
            with torch.set_grad_enabled(gradient):
                # A leaf input that requires grad keeps the CAM layer in the graph even when
                # the model's parameters are frozen; only dY/dA is computed, never dY/dx.
                logits = self.model(x.requires_grad_(True) if gradient else x)
            self._check_spatial(extractor.hook_a[0])
            t = self._resolve_target(logits, target)
            cams = extractor(class_idx=t.tolist(), scores=logits, normalized=False)[0]
        cams = torch.nan_to_num(cams.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
        return SalienceOutput(maps=minmax_normalize(cams), logits=logits.detach(), target=t)
