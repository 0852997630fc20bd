"""Architecture registry: how to build each classifier, its input size, normalisation and CAM layer.

Every architecture is described by an :class:`ArchSpec`. ``build_model`` returns a plain
``nn.Module`` with ``num_classes`` outputs, randomly initialised, initialised from the
torchvision ImageNet weights found in the local torch hub cache (never downloaded), or
loaded from a state-dict checkpoint file.

The class activation map (CAM) of ``cam_layer`` is exact when the head is
``logits = W @ GAP(A) + b`` with ``W`` the weight of ``classifier_layer``; ``cam_exact``
says whether that holds for the architecture.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from salience_audit.errors import InputError, ModelError, WeightsUnavailableError
from salience_audit.models.small_cnn import SmallCNN

__all__ = [
    "ARCHITECTURES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ArchSpec",
    "build_model",
    "get_spec",
    "list_architectures",
    "load_state_dict_file",
    "pretrained_weights_file",
    "replace_classifier",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HALF: tuple[float, float, float] = (0.5, 0.5, 0.5)

#: ``builder(num_classes, weights)``: ``weights`` is a torchvision ``WeightsEnum`` member or None.
Builder = Callable[[int, Any], nn.Module]


@dataclass(frozen=True)
class ArchSpec:
    """Everything the toolkit needs to know about one architecture.

    Attributes:
        name: registry key (``"resnet50"``).
        input_size: square input side in pixels.
        mean, std: per-channel normalisation applied to [0, 1] images inside the model wrapper.
        cam_layer: dotted name of the last spatial block (its output is the map resolution).
        classifier_layer: dotted name of the final ``nn.Linear`` (replaced for ``num_classes``).
        builder: ``builder(num_classes, weights) -> nn.Module``.
        cam_exact: True when logits = W GAP(A) + b for A the ``cam_layer`` output, so that
            CAM from the classifier weights is exact; False for heads with an MLP or a
            normalisation after pooling (gradient methods still apply).
        torchvision_name: name for ``torchvision.models.get_model_weights`` (None: no
            pretrained weights).
        notes: free text shown in listings.
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str
    classifier_layer: str
    builder: Builder = field(repr=False, compare=False)
    cam_exact: bool = True
    torchvision_name: str | None = None
    notes: str = ""


def _torchvision_builder(tv_name: str, **fixed: Any) -> Builder:
    """A builder calling ``torchvision.models.get_model(tv_name, ...)``."""

    def build(num_classes: int, weights: Any) -> nn.Module:
        from torchvision.models import get_model

        if weights is None:
            return get_model(tv_name, weights=None, num_classes=num_classes, **fixed)
        return get_model(tv_name, weights=weights, **fixed)

    return build


def _inception_builder(num_classes: int, weights: Any) -> nn.Module:
    """Inception-v3 without the auxiliary head and with ``transform_input=False``.

    torchvision's ``transform_input=True`` (its default with ImageNet weights) only maps
    ImageNet-normalised input back to ``(x - 0.5) / 0.5``; the spec normalises with 0.5/0.5
    directly, so the same network works with and without pretrained weights and a saved
    state dict never depends on that flag.
    """
    from torchvision.models import get_model

    if weights is None:
        return get_model(
            "inception_v3",
            weights=None,
            num_classes=num_classes,
            aux_logits=False,
            init_weights=True,
            transform_input=False,
        )
    model = get_model("inception_v3", weights=weights, transform_input=False)
    model.aux_logits = False
    model.AuxLogits = None
    return model


def _small_cnn_builder(num_classes: int, weights: Any) -> nn.Module:
    if weights is not None:
        raise ModelError("small_cnn has no pretrained weights; use weights=None or a checkpoint path")
    return SmallCNN(num_classes=num_classes)


def _specs() -> dict[str, ArchSpec]:
    tv = _torchvision_builder
    specs = [
        ArchSpec("small_cnn", 64, HALF, HALF, "features", "classifier", _small_cnn_builder,
                 notes="4-stage CNN for demos and tests; 8x8 maps at 64 px"),
        ArchSpec("resnet18", 224, IMAGENET_MEAN, IMAGENET_STD, "layer4", "fc", tv("resnet18"),
                 torchvision_name="resnet18", notes="7x7 maps at 224 px"),
        ArchSpec("resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, "layer4", "fc", tv("resnet50"),
                 torchvision_name="resnet50", notes="7x7 maps at 224 px (published CAM layer)"),
        ArchSpec("densenet121", 224, IMAGENET_MEAN, IMAGENET_STD, "features", "classifier",
                 tv("densenet121"), torchvision_name="densenet121",
                 notes="7x7 maps at 224 px; torchvision applies ReLU in place to the features "
                       "output, so hooks see the rectified features"),
        ArchSpec("inception_v3", 299, HALF, HALF, "Mixed_7c", "fc", _inception_builder,
                 torchvision_name="inception_v3",
                 notes="8x8 maps at 299 px; no aux head; normalised to [-1, 1] "
                       "(equivalent to torchvision's transform_input)"),
        ArchSpec("efficientnet_b0", 224, IMAGENET_MEAN, IMAGENET_STD, "features", "classifier.1",
                 tv("efficientnet_b0"), torchvision_name="efficientnet_b0", notes="7x7 maps at 224 px"),
        ArchSpec("mobilenet_v3_large", 224, IMAGENET_MEAN, IMAGENET_STD, "features", "classifier.3",
                 tv("mobilenet_v3_large"), cam_exact=False, torchvision_name="mobilenet_v3_large",
                 notes="7x7 maps at 224 px; MLP head: CAM not exact, use gradient methods"),
        ArchSpec("convnext_tiny", 224, IMAGENET_MEAN, IMAGENET_STD, "features", "classifier.2",
                 tv("convnext_tiny"), cam_exact=False, torchvision_name="convnext_tiny",
                 notes="7x7 maps at 224 px; LayerNorm after pooling: CAM not exact"),
    ]
    return {s.name: s for s in specs}


#: All known architectures, by name.
ARCHITECTURES: Mapping[str, ArchSpec] = _specs()


def list_architectures() -> list[str]:
    """Names of the known architectures, in registry order."""
    return list(ARCHITECTURES)


def get_spec(name: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``name``; unknown names raise ``ModelError`` listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ModelError(f"unknown architecture {name!r}; known architectures: {known}") from None


def _get_submodule(module: nn.Module, dotted: str) -> nn.Module:
    try:
        return module.get_submodule(dotted)
    except AttributeError as exc:
        raise ModelError(f"layer {dotted!r} not found in {type(module).__name__}") from exc


def replace_classifier(module: nn.Module, classifier_layer: str, num_classes: int) -> nn.Module:
    """Replace the ``nn.Linear`` at ``classifier_layer`` by a fresh one with ``num_classes`` outputs.

    A no-op when it already has ``num_classes`` outputs. Returns ``module`` (modified in place).
    """
    old = _get_submodule(module, classifier_layer)
    if not isinstance(old, nn.Linear):
        raise ModelError(f"classifier layer {classifier_layer!r} is a {type(old).__name__}, not nn.Linear")
    if old.out_features == num_classes:
        return module
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child = classifier_layer.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, new)
    return module


def pretrained_weights_file(name: str) -> tuple[Any, Path]:
    """The torchvision ``DEFAULT`` weights enum of ``name`` and where its file must be in the cache.

    The file is ``<torch.hub.get_dir()>/checkpoints/<basename of the weights URL>``; the hub
    dir honours ``TORCH_HOME`` (default ``~/.cache/torch/hub``).
    """
    spec = get_spec(name)
    if spec.torchvision_name is None:
        raise ModelError(f"{name} has no ImageNet weights; use weights=None or a checkpoint path")
    from torchvision.models import get_model_weights

    enum = get_model_weights(spec.torchvision_name).DEFAULT
    filename = os.path.basename(enum.url)
    return enum, Path(torch.hub.get_dir()) / "checkpoints" / filename


def _build_imagenet(spec: ArchSpec, num_classes: int) -> nn.Module:
    enum, path = pretrained_weights_file(spec.name)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights for {spec.name} are not in the local cache and will not be downloaded: "
            f"put the file {path.name!r} (from {enum.url}) in the folder {str(path.parent)!r} "
            f"(set TORCH_HOME to use another cache)"
        )
    try:
        module = spec.builder(1000, enum)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load cached ImageNet weights for {spec.name} ({exc}); "
                         f"the file may be truncated, replace it") from exc
    return replace_classifier(module, spec.classifier_layer, num_classes)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state-dict checkpoint with ``torch.load(..., weights_only=True)`` (or safetensors).

    Accepts a bare state dict or a dict holding it under ``"state_dict"`` or ``"model"``
    (other keys such as ``"optimizer"`` and ``"epoch"`` are ignored), and ``.safetensors``
    files (optional package ``safetensors``);
    a common ``"module."`` prefix (``DataParallel`` or an ``AuditModel`` state dict) is
    removed. Raises ``InputError`` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path)
    if path.suffix.lower() == ".safetensors":
        obj = _read_safetensors(path)
    else:
        obj = _torch_load_weights(path)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(
            f"not a state dict (a mapping of parameter names to tensors): got {type(obj).__name__}", path
        )
    state = {str(k): v for k, v in obj.items()}
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file (the optional ``safetensors`` package; no code is run)."""
    from salience_audit.errors import require_extra

    load_file = require_extra("safetensors.torch", "byo", f"reading {path} (.safetensors)").load_file
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - the reader raises several types on corrupt headers
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(f"cannot read a safetensors file ({type(exc).__name__}: {first})", path) from exc


def _torch_load_weights(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into an ``InputError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(
            "the file holds pickled Python objects (e.g. a whole model saved with torch.save(model)) that "
            "torch.load(weights_only=True) refuses; save model.state_dict() instead, or load a file you "
            "trust with load_trusted_module(path, trust=True)",
            path,
        ) from exc
    except Exception as exc:  # noqa: BLE001 - corrupt archives raise many types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(
            f"cannot read a PyTorch checkpoint ({type(exc).__name__}: {first}); is it a file written by torch.save?",
            path,
        ) from exc


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _checkpoint_classes(state: Mapping[str, Tensor], classifier_layer: str) -> int | None:
    weight = state.get(f"{classifier_layer}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else None


def guess_architecture(state: Mapping[str, Tensor]) -> tuple[str, int | None] | None:
    """The registry architecture whose parameter names and shapes match ``state``, and its class count.

    Candidate models are built on the ``meta`` device (no memory, no initialisation cost).
    The classifier's output size is allowed to differ. Returns None when nothing matches.
    """
    got = {k: tuple(v.shape) for k, v in state.items()}
    for spec in ARCHITECTURES.values():
        n = _checkpoint_classes(state, spec.classifier_layer)
        if n is None:
            continue
        try:
            with torch.device("meta"):
                ref = _shapes(spec.builder(n, None))
        except Exception:  # noqa: BLE001 - a builder that cannot run on meta is skipped
            continue
        if ref == got:
            return spec.name, n
    return None


def _load_checkpoint(module: nn.Module, spec: ArchSpec, num_classes: int, path: str | Path) -> nn.Module:
    state = load_state_dict_file(path)
    expected = _shapes(module)
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected == got:
        module.load_state_dict(state, strict=True)
        return module
    guess = guess_architecture(state)
    if guess is not None:
        arch, n = guess
        hint = f"the checkpoint seems to be for architecture {arch!r} with num_classes={n}"
    else:
        hint = "it does not match any registered architecture"
    raise InputError(
        f"checkpoint does not fit {spec.name} with num_classes={num_classes} "
        f"({state_dict_mismatch(expected, got)}); {hint}",
        path,
    )


def state_dict_mismatch(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]]) -> str:
    """How a checkpoint's parameter shapes ``got`` differ from a model's ``expected`` ones, in words."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
    details = []
    if mismatched:
        k = mismatched[0]
        details.append(f"{len(mismatched)} shape mismatch(es), e.g. {k}: checkpoint {got[k]} vs model {expected[k]}")
    if missing:
        details.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
    return "; ".join(details)


def build_model(name: str, num_classes: int = 2, weights: str | Path | None = None) -> nn.Module:
    """Build architecture ``name`` with ``num_classes`` outputs.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        num_classes: size of the classifier output.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision ``DEFAULT`` weights read
            from the local torch hub cache, then a fresh classifier for ``num_classes``), or the
            path of a state-dict checkpoint for exactly this architecture and class count.

    Raises:
        ModelError: unknown architecture.
        WeightsUnavailableError: ``"imagenet"`` requested and the file is not in the cache
            (the message names the file and the folder to put it in).
        InputError: checkpoint missing, unreadable, or not matching (with a guess of what it is for).
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    if weights is None:
        return spec.builder(num_classes, None)
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return _build_imagenet(spec, num_classes)
    module = spec.builder(num_classes, None)
    return _load_checkpoint(module, spec, num_classes, weights)
