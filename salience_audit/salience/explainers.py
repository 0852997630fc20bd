"""Explainers from elsewhere: any callable, Captum attribution methods, pytorch-grad-cam methods.

An explainer is a callable ``explainer(model, images, target) -> maps``:

- ``model``: the :class:`~salience_audit.models.audit_model.AuditModel` (its forward takes
  images in [0, 1] and normalises them itself);
- ``images``: ``[B, 3, H, W]`` float in [0, 1], on the model's device;
- ``target``: ``[B]`` int64, the class to explain (predicted or true label);
- returns maps ``[B, h, w]`` (tensor or NumPy array, any resolution, any scale).

:class:`~salience_audit.salience.extract.SalienceExtractor` accepts one as its ``method``
and min-max normalises its maps per image like every built-in method (constant -> zeros;
non-finite values are refused). From the command line, ``--method package.module:function``
(or ``path/file.py:function``) imports one; importing runs that code.

Adapters (optional extras, see ``pip install 'salience-audit[byo]'``):

- :func:`captum_explainer` wraps a Captum attribution class (``captum.attr``): layer methods
  (``LayerGradCam``, ``LayerActivation`` ...) are built as ``Method(model, layer)`` on the
  model's CAM layer (or ``layer``), the others as ``Method(model)``; the map is
  ``attribute(images, target=target, **kwargs)`` summed over its channel axis (absolute
  values first with ``absolute=True``).
- :func:`grad_cam_explainer` wraps a pytorch-grad-cam class (``pytorch_grad_cam.GradCAM`` ...)
  built as ``Method(model=model, target_layers=[layer])`` and called with one
  ``ClassifierOutputTarget`` per image; its maps are at the input resolution, as that
  library returns them.

``--method captum.attr:IntegratedGradients`` and ``--method pytorch_grad_cam:GradCAMPlusPlus``
name such a class directly; :func:`resolve_explainer` wraps it with its adapter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from salience_audit.errors import ModelError, require_extra

__all__ = ["Explainer", "captum_explainer", "grad_cam_explainer", "resolve_explainer"]

Explainer = Callable[[Any, Tensor, Tensor], Any]


def _layer(model: Any, layer: str | None) -> torch.nn.Module:
    return model.resolve_layer(layer or model.cam_layer)


def _library_class(method: type | str, package: str, what: str) -> type:
    if isinstance(method, type):
        return method
    module = require_extra(package, "byo", f"the {what} explainer {method!r}")
    try:
        return getattr(module, method)
    except AttributeError:
        raise ModelError(f"{package} has no method {method!r}") from None


def captum_explainer(method: type | str, layer: str | None = None, absolute: bool = False,
                     **attribute_kwargs: Any) -> Explainer:
    """An explainer running a Captum attribution class (an ``captum.attr`` class or its name).

    The map is ``sum_c A[:, c]`` (``sum_c |A[:, c]|`` with ``absolute=True``) of the
    attribution ``A = Method(...).attribute(images, target=target, **attribute_kwargs)``.
    """
    cls = _library_class(method, "captum.attr", "Captum")
    takes_layer = "layer" in inspect.signature(cls.__init__).parameters

    def explain(model: Any, images: Tensor, target: Tensor) -> Tensor:
        algo = cls(model, _layer(model, layer)) if takes_layer else cls(model)
        attribution = algo.attribute(images, target=target, **attribute_kwargs)
        if isinstance(attribution, tuple):
            attribution = attribution[0]
        attribution = attribution.detach().float()
        if absolute:
            attribution = attribution.abs()
        return attribution.sum(dim=1) if attribution.dim() == 4 else attribution

    explain.__name__ = f"captum.{cls.__name__}"
    return explain


def grad_cam_explainer(method: type | str, layer: str | None = None, **init_kwargs: Any) -> Explainer:
    """An explainer running a pytorch-grad-cam class (``pytorch_grad_cam.GradCAM`` or its name)."""
    cls = _library_class(method, "pytorch_grad_cam", "pytorch-grad-cam")

    def explain(model: Any, images: Tensor, target: Tensor) -> np.ndarray:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(t)) for t in target.tolist()]
        with cls(model=model, target_layers=[_layer(model, layer)], **init_kwargs) as cam:
            return cam(input_tensor=images, targets=targets)

    explain.__name__ = f"pytorch_grad_cam.{cls.__name__}"
    return explain


def resolve_explainer(spec: str) -> Explainer:
    """The explainer named ``package.module:function`` / ``file.py:function`` (runs that code).

    A Captum or pytorch-grad-cam class (``captum.attr:LayerGradCam``,
    ``pytorch_grad_cam:GradCAM``) is wrapped by its adapter with default settings.
    """
    from salience_audit.models.checkpoint import import_object

    obj = import_object(spec)
    if isinstance(obj, type):
        home = obj.__module__.split(".")[0]
        if home == "captum":
            return captum_explainer(obj)
        if home == "pytorch_grad_cam":
            return grad_cam_explainer(obj)
        raise ModelError(f"{spec} is a class; --method needs a function (model, images, target) -> maps, "
                         "or a Captum / pytorch-grad-cam method class")
    if not callable(obj):
        raise ModelError(f"{spec} is not callable; --method needs a function (model, images, target) -> maps")
    return obj
