"""Training configuration: the recipe of the original study as defaults, saved with every run.

Defaults (Boyd et al., WACV 2023; Crum et al., 2023): SGD with lr 0.005, momentum 0.9,
weight decay 1e-6; the learning rate is multiplied by 0.1 every 12 epochs; batch size 20;
50 epochs; the checkpoint with the best validation accuracy is kept; no augmentation;
ImageNet-initialised backbones. ``loss="cyborg"`` trains with
``alpha * CE + (1 - alpha) * MSE(CAM, human map)`` (alpha 0.5 by default);
``loss="xent"`` is plain cross-entropy (alpha forced to 1).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from salience_audit.errors import InputError

__all__ = ["LOSSES", "TrainConfig", "DEFAULT_CYBORG_ALPHA"]

#: Known loss families.
LOSSES: tuple[str, ...] = ("xent", "cyborg")
DEFAULT_CYBORG_ALPHA = 0.5
_DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything that defines one training run (except the data and the output folder).

    Attributes:
        arch: architecture name from the model registry.
        loss: ``"xent"`` (cross-entropy) or ``"cyborg"`` (human-salience-guided).
        alpha: weight of cross-entropy in the guided loss; ``None`` picks 0.5 for cyborg;
            always 1.0 for xent.
        lr, momentum, weight_decay: SGD settings.
        step_size, gamma: StepLR schedule, lr *= gamma every ``step_size`` epochs.
        batch_size, epochs: loop size; the best epoch by validation accuracy is kept
            (ties go to the lower validation loss, alpha * CE + (1 - alpha) * MSE).
        augment: random horizontal flip of training images (and their human maps).
        weights: ``None`` (random init), ``"imagenet"`` (local torchvision cache) or a
            state-dict path.
        device: ``"auto"`` (cuda if available), ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` too).
        num_workers: DataLoader worker processes (0 = load in the main process).
        seed: seeds every random number generator of the run.
        group: name of the model family (recipe); ``None`` derives ``{arch}-{loss}``
            (with ``-a{alpha}`` when alpha is not the default).
        deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)`` while
            training (bit-identical reruns on CPU).
    """

    arch: str = "densenet121"
    loss: str = "cyborg"
    alpha: float | None = None
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-6
    step_size: int = 12
    gamma: float = 0.1
    batch_size: int = 20
    epochs: int = 50
    augment: bool = False
    weights: str | None = "imagenet"
    device: str = "auto"
    num_workers: int = 0
    seed: int = 0
    group: str | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.loss == "xent":
            if self.alpha is not None and float(self.alpha) != 1.0:
                warnings.warn(f"loss 'xent' is plain cross-entropy: alpha {self.alpha} ignored, using 1.0",
                              stacklevel=3)
            self.alpha = 1.0
        elif self.alpha is None:
            self.alpha = DEFAULT_CYBORG_ALPHA
        self.alpha = float(self.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {self.alpha}")
        for name in ("batch_size", "epochs", "step_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.lr <= 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.device.split(":")[0] not in _DEVICES:
            raise InputError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if isinstance(self.weights, Path):
            self.weights = str(self.weights)

    @property
    def group_name(self) -> str:
        """The model-family name: ``group`` if set, else ``{arch}-{loss}`` (``-a{alpha}`` if not default)."""
        if self.group:
            return self.group
        name = f"{self.arch}-{self.loss}"
        if self.loss == "cyborg" and self.alpha != DEFAULT_CYBORG_ALPHA:
            name += f"-a{self.alpha:g}"
        return name

    def with_seed(self, seed: int) -> TrainConfig:
        """A copy of this config with another seed."""
        return TrainConfig.from_dict({**self.to_dict(), "seed": int(seed)})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. ``run.json["config"]``); unknown keys raise ``InputError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown training config key(s): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def recipe_dict(self) -> dict[str, Any]:
        """Fields that change the trained weights (excludes device, num_workers and group).

        Two runs with equal ``recipe_dict()`` and the same data are the same experiment;
        resuming checks it.
        """
        data = self.to_dict()
        for key in ("device", "num_workers", "group"):
            data.pop(key)
        return data
