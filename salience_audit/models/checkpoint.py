"""Models as users already have them: bare checkpoint files, their own code, timm by name.

A :class:`ModelRecipe` says how to rebuild the network a checkpoint file belongs to, when
there is no ``run.json`` beside it:

- ``arch="densenet121"`` (any registry name): the torchvision network with its classifier
  replaced by ``Linear(., num_classes)``, exactly what the original CYBORG training code
  builds;
- ``arch="timm:NAME"``: ``timm.create_model(NAME, pretrained=False, num_classes=...)``
  (optional package ``timm``);
- ``model="package.module:factory"`` or ``model="path/to/file.py:Class"``: the user's own
  code. **Importing it runs that code**; it happens only when the recipe names it.
  The factory is called as ``factory(num_classes=N)`` when it takes a ``num_classes``
  parameter, else ``factory()``, and must return an ``nn.Module``.

Checkpoints are read by :func:`~salience_audit.models.registry.load_state_dict_file`
(``weights_only=True`` always; bare state dict, ``{'state_dict': ...}``, ``{'model': ...}``,
``module.`` prefixes, ``.safetensors``).

The salience layer (``target_layer``) is found automatically when not given: the last
module whose output is a spatial map ``[B, K, h, w]`` with ``h * w > 1`` in one probe pass.
Vision transformers produce tokens ``[B, N, D]`` instead; their layer gets a
:class:`TokenGrid` child (``<layer>.token_grid.grid`` becomes the salience layer), which
reshapes the ``N - p`` patch tokens (``p`` prefix tokens such as the class token) to a
``[B, D, s, s]`` grid and back, so every CAM method sees a spatial map while the network
computes exactly what it did and its state dict keeps its keys. For timm ViTs the default layer is the last block's first norm (``blocks.-1.norm1``):
with class-token pooling the gradient of the class score reaches no patch token of the
last block's *output*, so maps there would be empty.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from salience_audit.errors import InputError, ModelError
from salience_audit.models.audit_model import DEFAULT_CLASS_NAMES, AuditModel
from salience_audit.models.registry import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    get_spec,
    load_state_dict_file,
    state_dict_mismatch,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "ModelRecipe",
    "TokenGrid",
    "attach_token_grid",
    "build_from_recipe",
    "checkpoint_run_names",
    "import_object",
    "load_checkpoint",
]

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt", ".bin", ".tar", ".safetensors")
"""File types taken as checkpoint files when a group's glob matches files."""

NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "half": (HALF, HALF),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
"""Named input normalisations ``x = (x01 - mean) / std`` (``half``: to [-1, 1]; ``none``: [0, 1] as is)."""

_GENERIC_FOLDERS = frozenset({"logs", "log", "checkpoints", "checkpoint", "ckpt", "weights", "models", "model"})


@dataclass(frozen=True)
class ModelRecipe:
    """How to rebuild the network of a checkpoint file (picklable: it travels to workers).

    Attributes:
        arch: a registry name (``densenet121``) or ``timm:NAME``; exclusive with ``model``.
        model: ``package.module:factory`` or ``path/file.py:Class`` (runs the user's code).
        num_classes: classifier outputs.
        class_names: one name per output (default Real, Synthetic for two classes).
        input_size: square input side (default: the architecture's).
        normalize: ``imagenet``, ``half``, ``none`` or ``"m1,m2,m3/s1,s2,s3"`` (default: the
            architecture's; ``imagenet`` for user code and timm models without a config).
        target_layer: dotted name of the salience layer (default: found automatically).
        classifier_layer: dotted name of the final ``nn.Linear`` (default: the registry's,
            timm's ``get_classifier()``, or the last ``nn.Linear``).
    """

    arch: str | None = None
    model: str | None = None
    num_classes: int = 2
    class_names: tuple[str, ...] | None = None
    input_size: int | None = None
    normalize: str | None = None
    target_layer: str | None = None
    classifier_layer: str | None = None

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.model is None):
            raise ModelError("a model recipe needs exactly one of arch (a registry name or timm:NAME) "
                             "and model (package.module:factory or file.py:Class)")
        if self.num_classes < 1:
            raise ModelError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ModelError(f"{len(self.class_names)} class names given for {self.num_classes} classes")
        if self.input_size is not None and self.input_size < 8:
            raise ModelError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.normalize is not None:
            parse_normalize(self.normalize)
        if self.arch is not None and not self.arch.startswith("timm:"):
            get_spec(self.arch)

    @property
    def label(self) -> str:
        """What the recipe builds, for listings and ``audit.json`` (``densenet121``, ``timm:vit_tiny``, ...)."""
        return self.arch or str(self.model)


def parse_normalize(value: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``imagenet`` / ``half`` / ``none`` or ``"m1,m2,m3/s1,s2,s3"`` -> (mean, std)."""
    key = value.strip().lower()
    if key in NORMALIZATIONS:
        return NORMALIZATIONS[key]
    try:
        mean_s, std_s = key.split("/")
        mean = tuple(float(v) for v in mean_s.split(","))
        std = tuple(float(v) for v in std_s.split(","))
    except ValueError:
        raise ModelError(
            f"normalize must be one of {', '.join(NORMALIZATIONS)} or 'm1,m2,m3/s1,s2,s3', got {value!r}"
        ) from None
    if len(mean) not in (1, 3) or len(std) not in (1, 3) or any(s <= 0 for s in std):
        raise ModelError(f"normalize {value!r}: need 1 or 3 means and 1 or 3 positive stds")
    return mean, std


# ---------------------------------------------------------------------- user code


def import_object(spec: str) -> Any:
    """The object named by ``package.module:attr`` or ``path/to/file.py:attr`` (dots allowed in attr).

    A ``file.py`` path is imported as a module of its own (its folder is not added to
    ``sys.path``). This runs the user's code.
    """
    if ":" not in spec:
        raise ModelError(f"{spec!r}: expected package.module:name or path/to/file.py:name")
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ModelError(f"{spec!r}: expected package.module:name or path/to/file.py:name")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise InputError("Python file not found (resolved against the current folder "
                             f"{Path.cwd()})" if not path.is_absolute() else "Python file not found", path)
        name = f"_salience_audit_user_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(name, path)
            if file_spec is None or file_spec.loader is None:
                raise InputError("cannot import this file as a Python module", path)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            try:
                file_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise ModelError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelError(f"cannot import module {where!r} ({exc}); is it on PYTHONPATH?") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelError(f"{where} has no attribute {attr!r}") from None
    return obj


def _call_factory(factory: Any, num_classes: int, spec: str) -> nn.Module:
    if not callable(factory):
        raise ModelError(f"{spec}: not callable")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    accepts = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    module = factory(num_classes=num_classes) if accepts else factory()
    if not isinstance(module, nn.Module):
        raise ModelError(f"{spec} returned a {type(module).__name__}, not an nn.Module")
    return module


# ---------------------------------------------------------------------- token models


class TokenGrid(nn.Module):
    """Tokens ``[B, N, D]`` -> the same tokens, passing the patch tokens through ``grid`` as ``[B, D, s, s]``.

    Attached to a token layer by :func:`attach_token_grid` (as its child ``token_grid``, run
    by a forward hook on its output), so that ``<layer>.token_grid.grid`` outputs a spatial
    map (token ``p + i * s + j`` -> cell ``(i, j)``) where CAM hooks attach. It holds no
    parameters: the network's state dict and outputs are unchanged.
    """

    def __init__(self, prefix_tokens: int, side: int) -> None:
        super().__init__()
        self.prefix_tokens = int(prefix_tokens)
        self.side = int(side)
        self.grid = nn.Identity()

    def forward(self, tokens: Tensor) -> Tensor:
        p, s = self.prefix_tokens, self.side
        b, n, d = tokens.shape
        if n - p != s * s:
            raise ModelError(f"TokenGrid: expected {p} + {s}x{s} tokens, got {n}")
        grid = self.grid(tokens[:, p:].transpose(1, 2).reshape(b, d, s, s))
        return torch.cat([tokens[:, :p], grid.reshape(b, d, s * s).transpose(1, 2)], dim=1)


def attach_token_grid(layer: nn.Module, prefix_tokens: int, side: int) -> None:
    """Route ``layer``'s token output through a :class:`TokenGrid` child named ``token_grid``."""
    layer.add_module("token_grid", TokenGrid(prefix_tokens, side))
    layer.register_forward_hook(lambda module, _inputs, out: module.token_grid(out))


def _probe_outputs(module: nn.Module, input_size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every named submodule in one forward pass on a blank image."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            if isinstance(out, Tensor):
                shapes[name] = tuple(out.shape)

        hooks.append(sub.register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, input_size, input_size))
    except Exception as exc:
        raise ModelError(f"a probe forward pass at {input_size}x{input_size} failed: {type(exc).__name__}: {exc}; "
                         "check --input-size") from exc
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return shapes


def _split_tokens(n: int, prefix_hint: int | None) -> tuple[int, int] | None:
    """(prefix tokens, grid side) of ``n`` tokens: ``n - p`` a perfect square, ``p`` small."""
    candidates = [prefix_hint] if prefix_hint is not None else [0, 1, 2, 4, 5, 8]
    for p in candidates:
        side = math.isqrt(n - p) if n - p > 0 else 0
        if side > 1 and side * side == n - p:
            return p, side
    return None


def _wrap_tokens(module: nn.Module, layer: str, shape: tuple[int, ...], prefix_hint: int | None) -> str:
    split = _split_tokens(shape[1], prefix_hint)
    if split is None:
        raise ModelError(f"layer {layer!r} outputs {shape}: neither a spatial map [B, K, h, w] nor tokens "
                         "[B, N, D] with N - prefix a square number; pass another --target-layer")
    attach_token_grid(module.get_submodule(layer), *split)
    return f"{layer}.token_grid.grid"


def resolve_target_layer(
    module: nn.Module, input_size: int, requested: str | None, prefix_hint: int | None = None
) -> str:
    """Dotted name of the salience layer in ``module`` (wrapping a token layer by :class:`TokenGrid`).

    ``requested`` (``None``: automatic) must exist; a negative index such as ``blocks.-1.norm1``
    is resolved against its container. The automatic choice is the last submodule with a
    spatial output ``[B, K, h, w]`` (``h * w > 1``), else the last token output ``[B, N, D]``.
    """
    shapes = _probe_outputs(module, input_size)
    names = list(shapes)
    if requested is not None:
        layer = _canonical(module, requested)
        if layer not in shapes:
            from difflib import get_close_matches

            close = get_close_matches(layer, names, n=5, cutoff=0.5)
            hint = f"; closest names: {', '.join(close)}" if close else ""
            raise ModelError(f"no layer named {requested!r} with a tensor output in {type(module).__name__}{hint}")
    else:
        spatial = [n for n in names if len(shapes[n]) == 4 and shapes[n][2] * shapes[n][3] > 1]
        tokens = [n for n in names if len(shapes[n]) == 3 and _split_tokens(shapes[n][1], prefix_hint)]
        if spatial:
            layer = spatial[-1]
        elif tokens:
            layer = tokens[-1]
        else:
            raise ModelError(f"{type(module).__name__}: no layer gives a spatial map [B, K, h, w] or patch tokens "
                             f"at {input_size}x{input_size}; pass --target-layer")
    shape = shapes[layer]
    if len(shape) == 4:
        if shape[2] * shape[3] < 2:
            raise ModelError(f"layer {layer!r} outputs {shape}: a 1x1 map cannot be a salience map")
        return layer
    if len(shape) == 3:
        return _wrap_tokens(module, layer, shape, prefix_hint)
    raise ModelError(f"layer {layer!r} outputs {shape}, not a spatial map [B, K, h, w]")


def _canonical(module: nn.Module, dotted: str) -> str:
    """``blocks.-1.norm1`` -> ``blocks.11.norm1`` (negative indices into containers)."""
    parts = dotted.split(".")
    out: list[str] = []
    current: nn.Module = module
    for part in parts:
        if part.lstrip("-").isdigit() and part.startswith("-"):
            children = list(current.named_children())
            try:
                part = children[int(part)][0]
            except IndexError:
                raise ModelError(f"{dotted!r}: index {part} out of range") from None
        out.append(part)
        try:
            current = current.get_submodule(part)
        except AttributeError:
            return ".".join(out + parts[len(out):])
    return ".".join(out)


# ---------------------------------------------------------------------- building


@dataclass
class _Built:
    module: nn.Module
    input_size: int
    mean: Sequence[float]
    std: Sequence[float]
    cam_layer: str | None
    classifier_layer: str | None
    cam_exact: bool | None
    prefix_tokens: int | None = None


def _build_registry(recipe: ModelRecipe, weights: str | Path | None) -> _Built:
    from salience_audit.models.registry import build_model

    assert recipe.arch is not None
    spec = get_spec(recipe.arch)
    module = build_model(recipe.arch, recipe.num_classes, weights=weights)
    return _Built(module, spec.input_size, spec.mean, spec.std, spec.cam_layer, spec.classifier_layer, spec.cam_exact)


def _build_timm(recipe: ModelRecipe) -> _Built:
    assert recipe.arch is not None
    name = recipe.arch[len("timm:"):]
    from salience_audit.errors import require_extra

    timm = require_extra("timm", "byo", f"the architecture {recipe.arch!r}")
    if name not in timm.list_models():
        close = timm.list_models(f"*{name}*")[:5]
        raise ModelError(f"timm has no architecture {name!r}" + (f"; close names: {', '.join(close)}" if close else ""))
    try:
        # Transformers fix their token grid at creation: build them for the requested input size.
        module = timm.create_model(name, pretrained=False, num_classes=recipe.num_classes,
                                   **({"img_size": recipe.input_size} if recipe.input_size else {}))
    except TypeError:  # architectures without an img_size argument (CNNs)
        module = timm.create_model(name, pretrained=False, num_classes=recipe.num_classes)
    except Exception as exc:  # noqa: BLE001 - timm raises several types for bad settings
        raise ModelError(f"timm cannot build {name!r}: {exc}") from exc
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (3, 224, 224))[-1]
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    classifier = None
    head = module.get_classifier() if hasattr(module, "get_classifier") else None
    if isinstance(head, nn.Linear):
        classifier = next((n for n, m in module.named_modules() if m is head), None)
    cam_layer = None
    prefix = getattr(module, "num_prefix_tokens", None)
    blocks = getattr(module, "blocks", None)
    if prefix is not None and isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[-1], "norm1"):
        cam_layer = f"blocks.{len(blocks) - 1}.norm1"
    return _Built(module, int(size), mean, std, cam_layer, classifier, None,
                  None if prefix is None else int(prefix))


def _build_user(recipe: ModelRecipe) -> _Built:
    assert recipe.model is not None
    module = _call_factory(import_object(recipe.model), recipe.num_classes, recipe.model)
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    mean, std = NORMALIZATIONS["imagenet"]
    return _Built(module, 224, mean, std, None, linears[-1] if linears else None, None)


def build_from_recipe(recipe: ModelRecipe, weights: str | Path | None = None, name: str | None = None) -> AuditModel:
    """The :class:`AuditModel` of ``recipe``, with the state dict of ``weights`` when given.

    Keys and shapes must match exactly (``strict=True``); for registry architectures a
    mismatch names what the checkpoint seems to be for.
    """
    if recipe.arch is not None and not recipe.arch.startswith("timm:"):
        built = _build_registry(recipe, weights)
    else:
        built = _build_timm(recipe) if recipe.arch is not None else _build_user(recipe)
        if weights is not None:
            _load_strict(built.module, weights, recipe.label)
    input_size = recipe.input_size or built.input_size
    mean, std = (built.mean, built.std) if recipe.normalize is None else parse_normalize(recipe.normalize)
    requested = recipe.target_layer or built.cam_layer
    registry_layer = recipe.arch is not None and not recipe.arch.startswith("timm:") and recipe.target_layer is None
    cam_layer = requested if registry_layer else resolve_target_layer(
        built.module, input_size, requested, built.prefix_tokens)
    classifier = recipe.classifier_layer or built.classifier_layer
    names = recipe.class_names or (DEFAULT_CLASS_NAMES if recipe.num_classes == 2
                                   else tuple(str(i) for i in range(recipe.num_classes)))
    exact = built.cam_exact if registry_layer else None
    if cam_layer is not None and cam_layer.endswith(".token_grid.grid"):
        exact = False  # a token layer is never followed by global average pooling + linear
    return AuditModel(
        built.module, arch=recipe.label, input_size=input_size, mean=mean, std=std,
        cam_layer=str(cam_layer), classifier_layer=classifier, name=name or recipe.label,
        class_names=names, cam_exact=exact,
    )


def _load_strict(module: nn.Module, weights: str | Path, label: str) -> None:
    state = load_state_dict_file(weights)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise InputError(f"checkpoint does not fit {label} ({state_dict_mismatch(expected, got)})", weights)
    module.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, recipe: ModelRecipe, name: str | None = None) -> AuditModel:
    """Load one checkpoint file as an :class:`AuditModel` (``weights_only=True``; NaN weights refused).

    ``recipe.class_names`` is honoured as for run folders: two classes named (Synthetic, Real)
    get the final layer's rows swapped, so output 1 is always the Synthetic logit; names that
    do not say which output is Synthetic are refused.
    """
    from salience_audit.models.audit_model import _check_finite, _reorder_outputs, class_order

    model = build_from_recipe(recipe, weights=path, name=name or checkpoint_run_names([path])[0])
    _check_finite(model.module, Path(path))
    if recipe.class_names is not None:  # outputs (Synthetic, Real): rows swapped so output 1 is Synthetic
        order = class_order({"class_names": list(recipe.class_names), "num_classes": recipe.num_classes}, path)
        if order is not None:
            _reorder_outputs(model, order, Path(path))
    return model


# ---------------------------------------------------------------------- run names


def checkpoint_run_names(paths: Sequence[str | Path]) -> list[str]:
    """A run name per checkpoint file (or per folder / file of precomputed maps), taken from its path.

    With several paths, the name is the part of the path that differs between them: the
    components they share at the start and at the end are dropped (``weights/densenet_cyborg_3/
    Logs/final_model.pth`` among its siblings -> ``densenet_cyborg_3``; ``cams/gradcam/
    STYLEGAN2/densenet_xent_1/native`` -> ``densenet_xent_1``). A single path is named after the
    folder above a generic folder (``Logs``, ``checkpoints``, ``weights`` ...) or else its stem.
    """
    parts = [Path(p).with_suffix("").parts if Path(p).suffix.lower() in _NAME_SUFFIXES else Path(p).parts
             for p in paths]
    if len(parts) == 1:
        path = Path(paths[0])
        folder = path.parent
        while folder.name.lower() in _GENERIC_FOLDERS and folder.parent != folder:
            folder = folder.parent
        return [folder.name if folder != path.parent and folder.name else (path.stem or path.name)]
    head = 0
    while all(len(p) > head + 1 for p in parts) and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 for p in parts) and len({p[-1 - tail] for p in parts}) == 1:
        tail += 1
    names = ["/".join(p[head:len(p) - tail]) for p in parts]
    if len(set(names)) < len(names):  # e.g. the same path twice
        names = [str(p) for p in paths]
    return names


_NAME_SUFFIXES = frozenset((*CHECKPOINT_SUFFIXES, ".npz", ".parquet"))
