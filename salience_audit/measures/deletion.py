"""Deletion and insertion curves: scores as the most salient pixels are removed / restored.

Rows per image and run: ``deletion_auc`` and ``insertion_auc`` (pixels in salience order) and
``deletion_auc_random`` / ``insertion_auc_random`` (the same areas removed in a random order,
the control), areas over the fraction of pixels f in linspace(0, 1, steps + 1) of the
probability of the class the map explains. Costs 2 (steps + 1) - 2 forward passes of 2B images
(the two orders share the passes at f = 0 and f = 1, where nothing or everything is removed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import (
    BatchContext,
    Emit,
    Measure,
    Needs,
    Output,
    RunView,
    as_explainer,
    callable_module,
    explain_pass,
    images_tensor,
)
from salience_audit.measures.curve import area_under_curve
from salience_audit.models.scores import class_probability
from salience_audit.perturb.blur import _check_images_and_maps, gaussian_blur
from salience_audit.salience.extract import SalienceExtractor, eval_mode
from salience_audit.salience.normalize import upscale

DELETION_AUC = "deletion_auc"
INSERTION_AUC = "insertion_auc"
DELETION_AUC_RANDOM = "deletion_auc_random"
INSERTION_AUC_RANDOM = "insertion_auc_random"

Baseline = Literal["blur", "zero"]

BLUR_SIGMA = 10.0
"""Sigma of the blurred baseline (the images blurred, scipy "reflect"), in the audit and by default."""



def _pixel_ranks(maps_up: Tensor, random_order: bool, generator: torch.Generator | None) -> Tensor:
    """Rank [B, 1, H, W] of every pixel: 0 for the most salient (ties: lower flat index first),
    or a uniformly random permutation per image when ``random_order``."""
    b, height, width = maps_up.shape
    flat = maps_up.reshape(b, -1)
    if random_order:
        if generator is not None and generator.device.type != flat.device.type:
            raise ValueError(f"generator is on {generator.device} but the maps are on {flat.device}")
        keys = torch.rand(flat.shape, generator=generator, device=flat.device)
        order = torch.argsort(keys, dim=1)
    else:
        order = torch.sort(-flat.to(torch.float64), dim=1, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).view(b, 1, height, width)


def _baseline_images(x01: Tensor, baseline: Baseline | Tensor, blur_sigma: float) -> Tensor:
    """What removed pixels become: the images blurred, black, or the caller's tensor broadcast to ``x01``."""
    if isinstance(baseline, Tensor):
        return torch.broadcast_to(baseline.to(device=x01.device, dtype=x01.dtype), x01.shape)
    if baseline == "blur":
        return gaussian_blur(x01, blur_sigma)
    if baseline == "zero":
        return torch.zeros_like(x01)
    raise ValueError(f"baseline must be 'blur', 'zero' or a tensor, got {baseline!r}")


def _check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _score_curves(
    score_fn: Callable[[Tensor], Tensor], x01: Tensor, base: Tensor, ranks: Tensor, steps: int,
    order_free: dict[int, Tensor],
) -> dict[str, Tensor]:
    """Deletion and insertion curves of ``x01`` with pixels removed in the order ``ranks`` [B, 1, H, W].

    At f = 0 and f = 1 the scored batch does not depend on the order (nothing or everything
    removed): its scores are taken from ``order_free`` (keyed by the pixel count) when an earlier
    order of the same images, baseline and ``score_fn`` put them there, and stored there
    otherwise - the same batch, so the same numbers, without its forward pass.
    """
    b, height, width = ranks.shape[0], ranks.shape[-2], ranks.shape[-1]
    fractions = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    counts = torch.round(fractions * (height * width)).to(torch.int64).tolist()
    deletion = torch.empty(b, steps + 1, dtype=torch.float64, device=x01.device)
    insertion = torch.empty_like(deletion)
    with torch.no_grad():
        for i, count in enumerate(counts):
            endpoint = count in (0, height * width)
            if endpoint and count in order_free:
                scores = order_free[count]
            else:
                chosen = ranks < count
                scores = score_fn(torch.cat([torch.where(chosen, base, x01), torch.where(chosen, x01, base)]))
                if scores.shape != (2 * b,):
                    raise ValueError(
                        f"score_fn must return one score per image, shape {(2 * b,)}; got {tuple(scores.shape)}"
                    )
                if endpoint:
                    order_free[count] = scores
            deletion[:, i] = scores[:b].to(torch.float64)
            insertion[:, i] = scores[b:].to(torch.float64)
    fractions = fractions.to(x01.device)
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        DELETION_AUC: area_under_curve(fractions, deletion),
        INSERTION_AUC: area_under_curve(fractions, insertion),
    }


def deletion_insertion_curves(
    score_fn: Callable[[Tensor], Tensor],
    x01: Tensor,
    maps_up: Tensor,
    steps: int = 10,
    baseline: Baseline | Tensor = "blur",
    *,
    random_order: bool = False,
    generator: torch.Generator | None = None,
    blur_sigma: float = BLUR_SIGMA,
) -> dict[str, Tensor]:
    """Deletion and insertion curves of images ``[B, C, H, W]`` ranked by maps ``[B, H, W]``.

    For f in linspace(0, 1, steps + 1), let P_f be the n_f = round(f H W) top-ranked pixels
    (all channels). Deletion scores x with P_f replaced by the baseline; insertion scores the
    baseline with P_f restored from x. ``baseline``: "blur" (x blurred with ``blur_sigma``,
    scipy "reflect"), "zero" (black), or a tensor broadcastable to x.

    ``random_order=True`` ranks pixels by a random permutation per image (``generator``):
    the random-region control, removing regions of the same areas.

    Returns ``fractions`` [steps + 1], ``deletion`` and ``insertion`` [B, steps + 1] and
    their trapezoid areas over f, ``deletion_auc`` and ``insertion_auc`` [B]. A faithful map
    has a low deletion area and a high insertion area. ``score_fn`` is called once per
    fraction (steps + 1 calls) on the 2B images (deleted then inserted), under ``no_grad``.
    """
    _check_images_and_maps(x01, maps_up)
    _check_steps(steps)
    base = _baseline_images(x01, baseline, blur_sigma)
    ranks = _pixel_ranks(maps_up.to(x01.device), random_order, generator)
    return _score_curves(score_fn, x01, base, ranks, steps, {})


def _areas(
    forward: Callable[[Tensor], Tensor], x: Tensor, maps_up: Tensor, target: Tensor, steps: int,
    generator: torch.Generator | None, baseline: Baseline | Tensor = "blur", curves: bool = False,
) -> dict[str, Tensor]:
    """Salience-order and random-order (control) curves of one batch, areas keyed by the row names.

    The two orders share the baseline images (one blur) and the order-free passes at f = 0 and
    f = 1, so they cost 2 (steps + 1) - 2 forward passes of 2B images, not 2 (steps + 1); every
    score is the one :func:`deletion_insertion_curves` gives for that order.
    """
    _check_images_and_maps(x, maps_up)
    _check_steps(steps)
    tgt = target.to(x.device).view(-1, 1)

    def score_fn(images: Tensor) -> Tensor:
        return class_probability(forward(images), tgt.repeat(images.shape[0] // tgt.shape[0], 1))

    base = _baseline_images(x, baseline, BLUR_SIGMA)
    maps_up = maps_up.to(x.device)
    order_free: dict[int, Tensor] = {}
    ordered = _score_curves(score_fn, x, base, _pixel_ranks(maps_up, False, None), steps, order_free)
    control = _score_curves(score_fn, x, base, _pixel_ranks(maps_up, True, generator), steps, order_free)
    out = {
        DELETION_AUC: ordered[DELETION_AUC],
        INSERTION_AUC: ordered[INSERTION_AUC],
        DELETION_AUC_RANDOM: control[DELETION_AUC],
        INSERTION_AUC_RANDOM: control[INSERTION_AUC],
    }
    if curves:
        out.update(fractions=ordered["fractions"], deletion=ordered["deletion"], insertion=ordered["insertion"])
    return out


@accepts_numpy
def deletion(
    explainer: Any, images: Any, steps: int = 10, generator: torch.Generator | None = None,
    baseline: Baseline | Tensor = "blur",
) -> dict[str, Tensor]:
    """Deletion / insertion areas of each image, in salience order and in random order.

    ``images`` ``[B, 3, H, W]`` in [0, 1] (tensor or numpy array); the map of the predicted
    class is used, upscaled to the image size; ``baseline`` is what removed pixels become
    (``"blur"``: the image blurred with sigma 10, as in the audit; ``"zero"``; or a tensor).
    Returns ``deletion_auc``, ``insertion_auc``, ``deletion_auc_random`` and
    ``insertion_auc_random``, each ``[B]`` float64, and the salience-order curves
    ``deletion`` / ``insertion`` ``[B, steps + 1]`` at ``fractions`` ``[steps + 1]``.
    """
    explain = as_explainer(explainer)
    x = images_tensor(images)
    clean = explain_pass(explain, x)
    model = explain.model  # type: ignore[attr-defined]
    # A SalienceExtractor scores in its own precision (mixed precision when it has one).
    forward = explain.logits if isinstance(explain, SalienceExtractor) else model
    with torch.no_grad(), eval_mode(model):
        return _areas(forward, x, upscale(clean.maps, int(x.shape[-1])), clean.target, steps, generator,
                      baseline=baseline, curves=True)


class Deletion(Measure):
    """Deletion / insertion curves with a random-order control (forward passes only)."""

    name = "deletion"
    title = "Deletion / insertion"
    question = "Does the score fall fast when the most salient pixels are removed first?"
    intro = "Pixels are removed (deletion) or restored (insertion) in order of salience, with a random-order control."
    needs = Needs(passes=40)  # 2 x (2 (steps + 1) - 2) at the default 10 steps
    outputs = (
        Output(DELETION_AUC, "Deletion AUC",
               "Does the score fall fast when the most salient pixels are removed first?",
               "score x fraction removed (0-1)", "degradation", better="lower", primary=True),
        Output(INSERTION_AUC, "Insertion AUC",
               "Does the score rise fast when the most salient pixels are restored first?",
               "score x fraction restored (0-1)", "degradation", better="higher", primary=True),
        Output(DELETION_AUC_RANDOM, "Deletion AUC (random order)", "Control: deletion in random order.",
               "score x fraction removed (0-1)", "degradation", headline_variants=()),
        Output(INSERTION_AUC_RANDOM, "Insertion AUC (random order)", "Control: insertion in random order.",
               "score x fraction restored (0-1)", "degradation", headline_variants=()),
    )
    functional = staticmethod(deletion)
    constant_keys = ("fractions",)

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        areas = _areas(run.forward, ctx.images, run.maps_up, run.clean.target, ctx.config.deletion_steps,
                       ctx.generator)
        for key, values in areas.items():
            emit(run.name, key, "", values)


callable_module(__name__)  # salience_audit.measures.deletion(...) calls deletion() above
