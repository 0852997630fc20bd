"""The model wrapper every stage uses: [0, 1] images in, logits out, plus what salience needs.

``AuditModel.forward(x01)`` computes ``module((x01 - mean) / std)``; ``mean`` and ``std`` are
non-persistent ``[1, 3, 1, 1]`` buffers, so they follow ``.to(device)`` and do not appear in
the state dict (which therefore equals the wrapped module's, with a ``module.`` prefix).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from salience_audit.errors import InputError, ModelError
from salience_audit.models.registry import build_model, get_spec

__all__ = ["AuditModel", "class_order", "load_run", "load_trusted_module"]

DEFAULT_CLASS_NAMES: tuple[str, ...] = ("Real", "Synthetic")

_CLASS_ALIASES: dict[str, int] = {"real": 0, "bonafide": 0, "bona fide": 0, "genuine": 0, "synthetic": 1, "fake": 1}
"""Names accepted in ``run.json``'s ``class_names`` for the bona fide (0) and the attack (1) class."""


def class_order(meta: dict[str, Any], path: str | Path, check_count: bool = True) -> list[int] | None:
    """Which output of a two-class run is Real and which Synthetic, from ``run.json``'s ``class_names``.

    Returns ``None`` when the outputs are already in the order (Real, Synthetic) (or the
    run has no ``class_names``, or more than two classes), else ``[i_real, i_synthetic]``:
    the output indices to read as class 0 and class 1. Names are matched case-insensitively
    (Real / bona fide / genuine, Synthetic / fake). Names that do not say which output is
    Synthetic are refused with an :class:`InputError` naming ``path``; so is a name count
    other than ``num_classes`` when ``check_count`` (after the checkpoint is known to fit).
    """
    names = meta.get("class_names")
    if names is None:
        return None
    num_classes = meta.get("num_classes", 2)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"class_names must be a list of class names, got {names!r}", path)
    if isinstance(num_classes, int) and len(names) != num_classes:
        if not check_count:
            return None
        raise InputError(f"class_names lists {len(names)} names for {num_classes} outputs", path)
    if len(names) != 2:
        return None
    classes = [_CLASS_ALIASES.get(n.strip().lower()) for n in names]
    if sorted(c for c in classes if c is not None) != [0, 1]:
        raise InputError(
            f"class_names {names} do not say which output is Synthetic; expected the names Real and "
            "Synthetic (in the order of the model's outputs)",
            path,
        )
    order = [classes.index(0), classes.index(1)]
    return None if order == [0, 1] else order


def _reorder_outputs(model: AuditModel, order: list[int], path: Path) -> None:
    """Permute the final linear layer's rows so that output ``k`` is class ``order[k]``'s logit."""
    if model.classifier_layer is None:
        raise InputError(
            f"class_names puts the classes in the order {list(model.class_names)}, but the model has no "
            "classifier layer (classifier_layer in run.json) whose outputs could be reordered to (Real, Synthetic)",
            path,
        )
    layer = model.resolve_layer(model.classifier_layer)
    index = torch.as_tensor(order, device=layer.weight.device)
    with torch.no_grad():
        layer.weight.copy_(layer.weight.index_select(0, index))
        if layer.bias is not None:
            layer.bias.copy_(layer.bias.index_select(0, index))
    model.class_names = DEFAULT_CLASS_NAMES


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ModelError(f"{what} needs 1 or 3 values, got {len(vals)}")
    return vals  # type: ignore[return-value]


class AuditModel(nn.Module):
    """A classifier together with its preprocessing and salience metadata.

    Args:
        module: the classifier (normalised input -> logits ``[B, C]``).
        arch: architecture name (a registry key, or a free label for custom modules).
        input_size: square input side in pixels.
        mean, std: per-channel normalisation ``x = (x01 - mean) / std``.
        cam_layer: dotted name (inside ``module``) of the layer whose output gives the maps.
        classifier_layer: dotted name of the final ``nn.Linear`` (None: no exact CAM).
        name: display name (a run name, a seed ...).
        class_names: one name per output; class 1 is "Synthetic".
        cam_exact: True when logits = W GAP(A) + b for A the ``cam_layer`` output; False when
            known not to hold; None when unknown (the ``cam`` method then checks it at run time).
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        module: nn.Module,
        arch: str,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        cam_layer: str,
        classifier_layer: str | None,
        name: str = "model",
        class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
        cam_exact: bool | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.arch = arch
        self.input_size = int(input_size)
        self.name = name
        self.class_names = tuple(class_names)
        self.cam_exact = cam_exact
        mean_t, std_t = _triple(mean, "mean"), _triple(std, "std")
        if any(s <= 0 for s in std_t):
            raise ModelError(f"std must be positive, got {std_t}")
        self.register_buffer("mean", torch.tensor(mean_t).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std_t).view(1, 3, 1, 1), persistent=False)
        self.cam_layer = cam_layer
        self.classifier_layer = classifier_layer
        self.resolve_layer(cam_layer)
        if classifier_layer is not None and not isinstance(self.resolve_layer(classifier_layer), nn.Linear):
            raise ModelError(f"classifier layer {classifier_layer!r} of {name} is not an nn.Linear")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arch(
        cls,
        arch: str,
        num_classes: int = 2,
        weights: str | Path | None = None,
        name: str | None = None,
    ) -> AuditModel:
        """Build a registry architecture (see :func:`~salience_audit.models.registry.build_model`)."""
        spec = get_spec(arch)
        module = build_model(arch, num_classes=num_classes, weights=weights)
        return cls(
            module,
            arch=arch,
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            cam_layer=spec.cam_layer,
            classifier_layer=spec.classifier_layer,
            name=name or arch,
            class_names=DEFAULT_CLASS_NAMES if num_classes == 2 else tuple(str(i) for i in range(num_classes)),
            cam_exact=spec.cam_exact,
        )

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        cam_layer: str,
        input_size: int,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        classifier_layer: str | None = None,
        name: str = "model",
    ) -> AuditModel:
        """Wrap any classifier. ``classifier_layer`` defaults to the last ``nn.Linear``.

        Raises ``ModelError("no convolutional layer for CAM")`` when the module has no conv
        layer with spatial output (e.g. an MLP). Whether CAM is exact is checked at run time.
        """
        if not any(isinstance(m, nn.Conv2d) for m in module.modules()):
            raise ModelError(f"{name}: no convolutional layer for CAM (the model has no nn.Conv2d layer)")
        if classifier_layer is None:
            linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
            classifier_layer = linears[-1] if linears else None
        return cls(
            module,
            arch=type(module).__name__,
            input_size=input_size,
            mean=mean,
            std=std,
            cam_layer=cam_layer,
            classifier_layer=classifier_layer,
            name=name,
            cam_exact=None if classifier_layer is not None else False,
        )

    # ------------------------------------------------------------------ use
    def forward(self, x01: Tensor) -> Tensor:
        """Logits ``module((x01 - mean) / std)`` of images ``[B, 3, H, W]`` in [0, 1]."""
        if x01.dim() != 4 or x01.shape[1] != 3:
            raise ModelError(f"{self.name}: expected images [B, 3, H, W], got {tuple(x01.shape)}")
        return self.module((x01 - self.mean) / self.std)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (or of the normalisation buffers)."""
        for t in self.parameters():
            return t.device
        return self.mean.device

    @property
    def num_classes(self) -> int | None:
        """Output size of the classifier layer (None when unknown)."""
        if self.classifier_layer is None:
            return None
        return int(self.resolve_layer(self.classifier_layer).out_features)

    def metadata(self) -> dict[str, Any]:
        """The ``run.json`` fields describing this model (see :func:`load_run`)."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "cam_layer": self.cam_layer,
            "classifier_layer": self.classifier_layer,
            "name": self.name,
            "class_names": list(self.class_names),
        }

    def resolve_layer(self, name: str) -> nn.Module:
        """The submodule of ``module`` at dotted path ``name`` (a ``module.`` prefix is accepted).

        Raises ``ModelError`` listing the closest layer names when it does not exist.
        """
        key = name[len("module."):] if name.startswith("module.") else name
        modules = dict(self.module.named_modules())
        if key in modules and key != "":
            return modules[key]
        close = get_close_matches(key, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; closest names: {', '.join(close)}" if close else ""
        raise ModelError(f"{self.name}: no layer named {name!r} in {type(self.module).__name__}{hint}")

    def classifier_weight(self) -> Tensor:
        """Weight ``[C, K]`` of the classifier layer (not detached: usable in a training loss)."""
        if self.classifier_layer is None:
            raise ModelError(f"{self.name}: no classifier layer, CAM needs one")
        return self.resolve_layer(self.classifier_layer).weight

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, arch={self.arch!r}, input_size={self.input_size}, "
                f"cam_layer={self.cam_layer!r}, classifier_layer={self.classifier_layer!r}")


# ---------------------------------------------------------------------- run folders
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"


def _check_finite(module: nn.Module, path: Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged training run): they give garbage logits."""
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(
            f"checkpoint holds non-finite values (NaN or infinity) in {len(bad)} tensor(s), e.g. "
            f"{', '.join(bad[:3])}; the training probably diverged - retrain this run or leave it out",
            path,
        )


def load_run(run_dir: str | Path, trust_pickle: bool = False) -> AuditModel:
    """Load a training run folder: ``run.json`` metadata + ``model.pt`` state dict.

    ``run.json`` keys: ``arch``, ``num_classes``, ``input_size``, ``mean``, ``std``,
    ``cam_layer``, ``classifier_layer`` and ``name`` (or ``seed``, giving ``<arch>-seed<k>``).
    The architecture is rebuilt without pretrained weights and the state dict is loaded
    with ``weights_only=True``. ``class_names`` is honoured: a run whose outputs are
    (Synthetic, Real) gets its final layer's rows swapped, so output 1 is always the
    Synthetic logit (see :func:`class_order`). A ``model.pt`` holding a pickled whole model is refused
    (unpickling runs code from the file) unless ``trust_pickle=True`` (command line:
    ``--trust-pickle``); that model is then used as it is, with the layers named in
    ``run.json``. Weights holding NaN or infinity are refused. Raises ``InputError`` naming
    the file at fault.
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_FILE
    if not meta_path.is_file():
        raise InputError(f"not a run folder: {RUN_FILE} is missing", run_dir)
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read run metadata: {exc}", meta_path) from exc
    if not isinstance(meta, dict) or ("arch" not in meta and "model" not in meta):
        raise InputError("run metadata needs at least the key 'arch' (or 'model': package.module:factory)",
                         meta_path)
    if "model" in meta or str(meta.get("arch", "")).startswith("timm:"):
        return _load_recipe_run(run_dir, meta, meta_path)
    arch = str(meta["arch"])
    try:
        spec = get_spec(arch)
    except ModelError as exc:
        raise InputError(str(exc), meta_path) from exc
    num_classes = int(meta.get("num_classes", 2))
    name = meta.get("name") or (f"{arch}-seed{meta['seed']}" if "seed" in meta else run_dir.name)
    weights = run_dir / MODEL_FILE
    try:
        module = build_model(arch, num_classes=num_classes, weights=weights)
    except InputError as exc:
        if not isinstance(exc.__cause__, pickle.UnpicklingError):
            raise
        if not trust_pickle:
            raise InputError(
                "the file holds a pickled Python object (e.g. a whole model saved with torch.save(model)), "
                "not a state dict; loading it can execute arbitrary code, so it is refused. Pass "
                "--trust-pickle (Python: load_run(..., trust_pickle=True)) only for a file you trust, or "
                "re-save it as model.state_dict()",
                weights,
            ) from exc
        module = load_trusted_module(weights, trust=True)
        if not any(isinstance(m, nn.Conv2d) for m in module.modules()):
            raise InputError(
                f"the pickled model ({type(module).__name__}) has no convolutional layer for CAM", weights
            ) from None
    _check_finite(module, weights)
    order = class_order(meta, meta_path)
    try:
        model = AuditModel(
            module,
            arch=arch,
            input_size=int(meta.get("input_size", spec.input_size)),
            mean=meta.get("mean", spec.mean),
            std=meta.get("std", spec.std),
            cam_layer=meta.get("cam_layer", spec.cam_layer),
            classifier_layer=meta.get("classifier_layer", spec.classifier_layer),
            name=str(name),
            class_names=meta.get("class_names", DEFAULT_CLASS_NAMES),
            cam_exact=spec.cam_exact,
        )
    except ModelError as exc:
        raise InputError(str(exc), meta_path) from exc
    if order is not None:
        _reorder_outputs(model, order, meta_path)
    return model


def _load_recipe_run(run_dir: Path, meta: dict[str, Any], meta_path: Path) -> AuditModel:
    """A run folder whose network comes from user code (``"model"``) or timm (``"arch": "timm:NAME"``).

    ``"model": "package.module:factory"`` imports and runs that code (it is named in the
    run folder's own metadata, so auditing a run folder you did not write runs its code:
    only audit folders you trust).
    """
    from salience_audit.models.checkpoint import ModelRecipe, load_checkpoint

    normalize = None
    if "mean" in meta and "std" in meta:
        normalize = ",".join(str(float(v)) for v in meta["mean"]) + "/" + ",".join(str(float(v)) for v in meta["std"])
    try:
        recipe = ModelRecipe(
            arch=None if "model" in meta else str(meta["arch"]),
            model=str(meta["model"]) if "model" in meta else None,
            num_classes=int(meta.get("num_classes", 2)),
            class_names=tuple(meta["class_names"]) if "class_names" in meta else None,
            input_size=int(meta["input_size"]) if "input_size" in meta else None,
            normalize=normalize,
            target_layer=meta.get("cam_layer") or meta.get("target_layer"),
            classifier_layer=meta.get("classifier_layer"),
        )
        name = meta.get("name") or (f"{recipe.label}-seed{meta['seed']}" if "seed" in meta else run_dir.name)
        return load_checkpoint(run_dir / MODEL_FILE, recipe, name=str(name))
    except ModelError as exc:
        raise InputError(str(exc), meta_path) from exc


def load_trusted_module(path: str | Path, trust: bool = False) -> nn.Module:
    """Load a whole pickled ``nn.Module`` (``torch.save(model)``).

    Unpickling runs arbitrary code from the file, so it is refused unless ``trust=True``
    (CLI: ``--trust-pickle``). Prefer state dicts with :func:`load_run` / ``build_model``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("model file not found", path)
    if not trust:
        raise InputError(
            "refusing to unpickle a full model: loading it can execute arbitrary code from the file. "
            "Pass trust=True (command line: --trust-pickle) only for files you trust, "
            "or save a state dict instead",
            path,
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot load the model ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    if not isinstance(obj, nn.Module):
        raise InputError(
            f"file holds a {type(obj).__name__}, not an nn.Module "
            "(for a state dict use build_model(..., weights=path))",
            path,
        )
    return obj
