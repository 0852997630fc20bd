"""What a measure is: its metadata, the rows it writes, and how the batch loop feeds it.

A :class:`Measure` answers one question about salience maps (entropy: "how focused is the
model?"). It declares, as class attributes:

- ``name`` (the name in ``--measures`` and in the config), ``title``, ``question``,
  ``intro`` (what the report says before its numbers) and ``finding`` (what the original
  study, Crum et al. 2023, found for human-guided vs plain models, or ``""``);
- ``needs``: what it costs and requires (:class:`Needs`: extra model passes, several runs,
  human maps, labels);
- ``outputs``: the row measures it writes (one :class:`Output` each: the value of the
  ``measure`` column, its unit, which direction is better, the study's direction ...).

The batch loop (:class:`salience_audit.audit.batch.BatchAuditor`) calls three hooks, in
the order of the registry (:mod:`salience_audit.measures.registry`):

1. :meth:`Measure.shared_variants` once per batch: image variants every run is explained
   on (noisy or flipped copies); the loop explains each (run, variant) once, and every
   measure asking for the same variant key gets the same maps;
2. :meth:`Measure.run_rows` once per run, with a :class:`RunView` (the clean pass, the
   shared variants' passes on request, one-off passes, the model for plain forward passes);
3. :meth:`Measure.group_rows` once per batch with every run's view (cross-run measures).

Rows are emitted as ``emit(run, measure, variant, values)`` with ``values`` one number per
image of the batch (NaN where undefined). A measure may also derive rows from the
collected rows at summary time (:meth:`Measure.derive`).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from salience_audit.salience.extract import SalienceOutput
from salience_audit.salience.normalize import upscale

Direction = str | None
"""``"lower"`` / ``"higher"`` (smaller / larger is better), ``"zero"`` (close to 0 is better), None (descriptive)."""

Emit = Callable[..., None]
"""``emit(run, measure, variant, values [B], run_b=None)``: add one row per image of the batch
(a row of a pair of runs names the second run in ``run_b``)."""


@dataclass(frozen=True)
class Needs:
    """What a measure requires beyond the clean salience pass of each run.

    Attributes:
        passes: extra model passes per image (salience passes on image variants or plain
            forward passes); 0 when it works on the clean maps alone.
        runs: the smallest number of runs per group it can use (2 for cross-run measures).
        human_maps: it compares with human annotation maps (rows only for images with one).
        labels: it needs the true class (rows are NaN for unlabelled images).
    """

    passes: int = 0
    runs: int = 1
    human_maps: bool = False
    labels: bool = False


@dataclass(frozen=True)
class Output:
    """One row measure (one value of the ``measure`` column) and how to read it.

    Attributes:
        name: the ``measure`` column value (``entropy_norm``).
        title: short human name; ``question``: what it answers; ``unit``: unit and range.
        section: the report section (the name of the measure that owns the section).
        better: better direction (see :data:`Direction`); ``better_by_variant`` overrides it.
        study: direction the original study found for guided relative to plain models.
        headline_variants: variants shown in headline tables (``()`` = detail only).
        note: one line shown under the title; ``primary``: answers the section's question.
        derived: computed at summary time from other rows (never written by the audit).
        pairwise: one row per pair of runs (``run`` = ``"runA|runB"``).
    """

    name: str
    title: str
    question: str
    unit: str
    section: str
    better: Direction = None
    better_by_variant: Mapping[str, Direction] = field(default_factory=dict)
    study: Direction = None
    headline_variants: tuple[str, ...] = ("",)
    note: str = ""
    primary: bool = False
    derived: bool = False
    pairwise: bool = False

    def direction(self, variant: str = "") -> Direction:
        """Better direction for one variant (a variant-specific direction wins)."""
        return self.better_by_variant.get(variant, self.better)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``summary.json`` key ``measures``, ``audit.json`` key ``measure_info``)."""
        return {
            "title": self.title,
            "question": self.question,
            "unit": self.unit,
            "section": self.section,
            "better": self.better,
            "better_by_variant": dict(self.better_by_variant),
            "study_guided_vs_plain": self.study,
            "headline_variants": list(self.headline_variants),
            "note": self.note,
            "primary": self.primary,
            "pairwise": self.pairwise,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Output:
        """Inverse of :meth:`to_dict` (unknown keys ignored, missing ones defaulted)."""
        return cls(
            name=name,
            title=str(data.get("title", name)),
            question=str(data.get("question", f"Values of the measure '{name}'.")),
            unit=str(data.get("unit", "value")),
            section=str(data.get("section", "other")),
            better=data.get("better"),
            better_by_variant=dict(data.get("better_by_variant") or {}),
            study=data.get("study_guided_vs_plain"),
            headline_variants=tuple(data.get("headline_variants", ("",))),
            note=str(data.get("note", "")),
            primary=bool(data.get("primary", False)),
            pairwise=bool(data.get("pairwise", False)),
        )


class DefaultConventions:
    """The default profile's operations (what :class:`BatchContext` uses when given none)."""

    noise_at_zero = False

    @staticmethod
    def upscale(maps: Tensor, size: int) -> Tensor:
        return upscale(maps, size)

    @staticmethod
    def guided_blur(x01: Tensor, maps_up: Tensor, mode: str) -> Tensor:
        from salience_audit.perturb.blur import guided_blur

        return guided_blur(x01, maps_up, mode=mode)  # type: ignore[arg-type]

    @staticmethod
    def noisy(x01: Tensor, amount: float, generator: torch.Generator | None) -> Tensor:
        from salience_audit.perturb.noise import salt_and_pepper

        return salt_and_pepper(x01, amount, generator=generator)


DEFAULT_CONVENTIONS = DefaultConventions()


@dataclass
class BatchContext:
    """One batch of images of one dataset, as every measure sees it.

    Attributes:
        images: ``[B, 3, H, W]`` in [0, 1] on the model device.
        labels: ``[B]`` int64 (0 Real, 1 Synthetic, -1 unknown).
        input_size: the models' input size (maps are upscaled to it where pixels matter).
        config: the audit settings (``noise_levels``, ``threshold``, ``deletion_steps``,
            ``extra`` for a user measure's own settings ...).
        generator: the batch's random generator (noise, random-order controls); measures
            draw from it in registry order, so a rerun draws the same numbers.
        human_maps: ``[B, H', W']`` in [0, 1] or None; ``has_human_map``: ``[B]`` bool or None.
        variants: shared image variants, key -> images ``[B, 3, H, W]`` (filled by the loop
            from :meth:`Measure.shared_variants`).
    """

    images: Tensor
    labels: Tensor
    input_size: int
    config: Any
    generator: torch.Generator | None = None
    human_maps: Tensor | None = None
    has_human_map: Tensor | None = None
    variants: dict[str, Tensor] = field(default_factory=dict)
    conventions: Any = None
    """Profile-dependent operations (``upscale``, ``guided_blur``, ``noisy``, ``noise_at_zero``;
    :class:`salience_audit.audit.conventions.Conventions`); None: the default profile's (:data:`DEFAULT_CONVENTIONS`)."""
    cache: dict[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conventions is None:
            self.conventions = DEFAULT_CONVENTIONS
    """Per-batch values that do not depend on the run (e.g. resized human maps), shared by measures."""


class RunView:
    """One run of the group on the current batch: its clean pass and passes on request.

    Args:
        name: the run's name (the ``run`` column).
        clean: the clean salience pass (maps ``[B, h, w]``, logits ``[B, C]``, target ``[B]``).
        explain: ``explain(list of image batches) -> list of SalienceOutput`` (one salience
            pass per batch, packed into model passes by the loop).
        forward: ``forward(images) -> logits``: a plain forward pass (checked for finiteness).
        input_size: size the maps are upscaled to by :attr:`maps_up`.
        variants: the batch's shared image variants (key -> images).
    """

    def __init__(
        self,
        name: str,
        clean: SalienceOutput,
        explain: Callable[[list[Tensor]], list[SalienceOutput]],
        forward: Callable[[Tensor], Tensor],
        input_size: int,
        variants: Mapping[str, Tensor],
        upscale: Callable[[Tensor, int], Tensor] = upscale,
    ) -> None:
        self.name = name
        self.clean = clean
        self.maps: Tensor = clean.maps.detach()
        self.explain = explain
        self.forward = forward
        self.input_size = input_size
        self._variants = variants
        self._upscale = upscale
        self._outputs: dict[str, SalienceOutput] = {}
        self._maps_up: Tensor | None = None
        self._score: Tensor | None = None

    @classmethod
    def of_maps(cls, name: str, maps: Tensor, input_size: int,
                upscale: Callable[[Tensor, int], Tensor] = upscale) -> RunView:
        """A run known only by its maps (precomputed maps): no logits, no passes."""

        def no_pass(*_: Any) -> Any:
            raise RuntimeError(f"run {name!r} has precomputed maps only: no model to make a pass with")

        return cls(name, SalienceOutput(maps=maps, logits=None, target=None),  # type: ignore[arg-type]
                   explain=no_pass, forward=no_pass, input_size=input_size, variants={}, upscale=upscale)

    @property
    def score(self) -> Tensor:
        """P(Synthetic) of the clean images, ``[B]`` float32."""
        if self.clean.logits is None:
            raise RuntimeError(f"run {self.name!r} has precomputed maps only: no score")
        if self._score is None:
            from salience_audit.models.scores import synthetic_probability

            self._score = synthetic_probability(self.clean.logits)
        return self._score

    @property
    def maps_up(self) -> Tensor:
        """Clean maps upscaled to the input size, ``[B, H, W]`` (computed once)."""
        if self._maps_up is None:
            self._maps_up = self._upscale(self.maps, self.input_size)
        return self._maps_up

    def outputs(self, keys: Sequence[str]) -> list[SalienceOutput]:
        """Salience passes of shared variants ``keys``; each (run, variant) is explained once."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._outputs]
        if todo:
            for key, out in zip(todo, self.explain([self._variants[k] for k in todo])):
                self._outputs[key] = out
        return [self._outputs[k] for k in keys]


class Measure:
    """Base class of a measure (see the module docstring). Subclasses set the class attributes."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    question: ClassVar[str] = ""
    intro: ClassVar[str] = ""
    finding: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    outputs: ClassVar[tuple[Output, ...]] = ()
    always: ClassVar[bool] = False
    """Computed in every audit whatever ``--measures`` says (detection)."""

    def shared_variants(self, ctx: BatchContext) -> dict[str, Tensor]:
        """Image variants (key -> images ``[B, 3, H, W]``) every run is explained on; none by default."""
        return {}

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        """Emit this measure's rows for one run (nothing by default)."""

    def group_rows(self, ctx: BatchContext, runs: Sequence[RunView], emit: Emit) -> None:
        """Emit rows that compare the runs of the group (nothing by default)."""

    def derive(self, rows: pd.DataFrame) -> list[pd.DataFrame]:
        """Rows derived from the audit's rows at summary time; none by default.

        ``rows`` has the row columns (:data:`salience_audit.results.schema.ROW_COLUMNS`); each
        returned frame has them too (in any order), with ``measure`` one of this measure's
        outputs marked ``derived=True`` (or an existing output with a new variant).
        """
        return []

    # -- the functional form as a streaming object (torchmetrics style) ---------------------

    functional: ClassVar[Callable[..., Any] | None] = None
    """The measure's function (e.g. :func:`salience_audit.measures.entropy.entropy`); per-image results."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Compute :attr:`functional` on one batch and keep its per-image values (first dimension = images)."""
        fn = type(self).functional
        if fn is None:
            raise NotImplementedError(f"measure {self.name!r} has no functional form")
        result = fn(*args, **kwargs)
        if not hasattr(self, "_state"):
            self._state: list[Any] = []
        self._state.append(result)

    def compute(self) -> Any:
        """Per-image values of every :meth:`update` so far, concatenated along the image dimension.

        A function returning a dict gives a dict (each entry concatenated along dim 0, nested
        dicts alike; entries listed in :attr:`constant_keys`, such as the noise amounts, are
        taken from the first batch); tensors stay tensors, numpy arrays stay arrays.
        """
        state = getattr(self, "_state", [])
        if not state:
            raise RuntimeError(f"measure {self.name!r}: compute() before any update()")
        return _concat(state, self.constant_keys)

    constant_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of the functional's dict that describe the columns (amounts, variant names, pairs), not images."""

    def reset(self) -> None:
        """Forget the values of previous :meth:`update` calls."""
        self._state = []

    def output(self, name: str) -> Output:
        """The :class:`Output` named ``name``."""
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"measure {self.name!r} has no output {name!r}")

    def __repr__(self) -> str:
        return f"<measure {self.name!r}: {self.question}>"


def _concat(parts: list[Any], constant_keys: tuple[str, ...] = ()) -> Any:
    """Concatenate per-batch results along the image dimension (dicts walked, constants kept once)."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: first[k] if k in constant_keys else _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    return torch.cat([p.detach().cpu() for p in parts], dim=0)


def as_tensor(x: Any, name: str = "input") -> Tensor:
    """A tensor from a tensor or a numpy array (float arrays kept as they are, no copy when possible)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name}: expected a torch tensor or a numpy array, got {type(x).__name__}")


def to_numpy(values: Tensor | np.ndarray) -> np.ndarray:
    """Per-image values as a float64 numpy array (what a row holds)."""
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def as_explainer(explainer: Any, method: str = "gradcam") -> Callable[..., SalienceOutput]:
    """An explainer: ``explainer(images [B, 3, H, W], target=None) -> SalienceOutput``.

    A :class:`~salience_audit.models.audit_model.AuditModel` is wrapped in a
    :class:`~salience_audit.salience.extract.SalienceExtractor` with ``method``; anything else
    callable is used as it is (it must return a ``SalienceOutput``: maps, logits, target).
    """
    from salience_audit.models.audit_model import AuditModel
    from salience_audit.salience.extract import SalienceExtractor

    if isinstance(explainer, AuditModel):
        return SalienceExtractor(explainer, method)
    if not callable(explainer):
        raise TypeError(f"expected an explainer (e.g. SalienceExtractor) or an AuditModel, got {type(explainer).__name__}")
    return explainer


def images_tensor(images: Any, device: torch.device | None = None) -> Tensor:
    """Images ``[B, 3, H, W]`` in [0, 1] from a tensor or numpy array (float; uint8 is divided by 255)."""
    x = as_tensor(images, "images")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape [B, 3, H, W], got {tuple(x.shape)}")
    return x if device is None else x.to(device)


def explain_pass(explainer: Callable[..., SalienceOutput], images: Tensor, target: Tensor | None = None) -> SalienceOutput:
    """One salience pass with the maps detached (what every measure reads)."""
    out = explainer(images, target=target)
    return SalienceOutput(maps=out.maps.detach(), logits=out.logits.detach(), target=out.target)


def explain_variants(
    explainer: Callable[..., SalienceOutput], variants: list[Tensor], batch_size: int | None = None,
    target: Tensor | None = None,
) -> list[SalienceOutput]:
    """Salience passes of several variants of the same B images, packed into passes of at most ``batch_size`` images.

    With ``batch_size`` None every variant gets its own pass of B images (passes never larger
    than the batch the caller chose: on a CPU a larger pass costs more per image). With a
    number, as the audit's batch loop does with its batch setting: whole variants are
    concatenated, floor(batch_size / B) per pass (at least one). The outputs come back one per variant.
    """
    if not variants:
        return []
    b = variants[0].shape[0]
    per_pass = 1 if batch_size is None else max(1, batch_size // max(b, 1))
    outs: list[SalienceOutput] = []
    for start in range(0, len(variants), per_pass):
        chunk = variants[start : start + per_pass]
        x = chunk[0] if len(chunk) == 1 else torch.cat(chunk, dim=0)
        out = explain_pass(explainer, x, None if target is None else target.repeat(len(chunk)))
        for k in range(len(chunk)):
            sl = slice(k * b, (k + 1) * b)
            outs.append(SalienceOutput(maps=out.maps[sl], logits=out.logits[sl], target=out.target[sl]))
    return outs


class _CallableModule(types.ModuleType):
    """A measure's module that can be called like its function: ``measures.entropy(maps)``.

    Calling the module calls the function of the same name inside it, so
    ``salience_audit.measures.entropy`` is at once the module (``.histogram_entropy``,
    ``.Entropy``, ``.ENTROPY_NORM``) and the measure's function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def callable_module(name: str) -> None:
    """Make the module ``name`` callable as its function of the same name (see :class:`_CallableModule`)."""
    sys.modules[name].__class__ = _CallableModule
