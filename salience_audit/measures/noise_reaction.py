"""(b) Reaction to out-of-set samples: how the focus and the score change as noise grows.

Every image is corrupted with salt-and-pepper noise of amount a (fraction of pixel values
replaced, :func:`salience_audit.perturb.noise.salt_and_pepper`) for each a of the noise
levels (a = 0 is the clean image). For each a and image the audit records:

- ``noise_score``: P(Synthetic) of the noisy image;
- ``noise_correct``: 1 / 0 decision correctness (NaN unlabelled);
- ``noise_ssim``: SSIM of the noisy image's map to the clean map (8-bit maps);
- ``noise_entropy``: normalised histogram entropy of the noisy image's map;

(variant ``a=<amount>``, ``%g`` formatting), and per image the areas under these four curves
over a (:func:`salience_audit.measures.curve.area_under_curve`): ``noise_auc_score``,
``noise_auc_correct``, ``noise_auc_ssim`` and ``noise_auc_entropy``. The noisy images are made
once per batch and shared by every run (same noise for every model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from salience_audit.measures import similarity
from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import (
    BatchContext,
    Emit,
    Measure,
    Needs,
    Output,
    RunView,
    as_explainer,
    as_tensor,
    callable_module,
    explain_pass,
    explain_variants,
    images_tensor,
    to_numpy,
)
from salience_audit.measures.curve import area_under_curve
from salience_audit.measures.decision import correct
from salience_audit.measures.entropy import normalized_histogram_entropy
from salience_audit.models.scores import synthetic_probability
from salience_audit.perturb.noise import NOISE_LEVELS, salt_and_pepper
from salience_audit.salience.extract import SalienceOutput

NOISE_SCORE = "noise_score"
NOISE_CORRECT = "noise_correct"
NOISE_SSIM = "noise_ssim"
NOISE_ENTROPY = "noise_entropy"
CURVES: dict[str, str] = {
    NOISE_SCORE: "noise_auc_score",
    NOISE_CORRECT: "noise_auc_correct",
    NOISE_SSIM: "noise_auc_ssim",
    NOISE_ENTROPY: "noise_auc_entropy",
}
"""Each per-amount measure and the area measure that summarises its curve."""


def variant_name(amount: float) -> str:
    """``a=0.05`` style name of a noise level (``%g`` formatting)."""
    return f"a={amount:g}"


def _levels(amounts: Sequence[float]) -> list[float]:
    levels = [float(a) for a in amounts]
    return levels if 0.0 in levels else [0.0, *levels]


def _curves(
    clean: SalienceOutput, noisy: dict[float, SalienceOutput], levels: Sequence[float], labels: Tensor | None,
    threshold: float,
) -> dict[str, list[np.ndarray]]:
    """Per-amount values ``{measure: [values [B] per amount]}``; amount 0 is the clean pass unless ``noisy`` has it."""
    by_level = {0.0: clean, **noisy}
    curves: dict[str, list[np.ndarray]] = {k: [] for k in CURVES}
    for a in levels:
        out = by_level[a]
        curves[NOISE_SCORE].append(to_numpy(synthetic_probability(out.logits)))
        if labels is not None:
            curves[NOISE_CORRECT].append(correct(out.logits, labels, threshold))
        curves[NOISE_SSIM].append(to_numpy(similarity.ssim_maps(out.maps.detach(), clean.maps)))
        curves[NOISE_ENTROPY].append(to_numpy(normalized_histogram_entropy(out.maps.detach())))
    return {k: v for k, v in curves.items() if v}


@accepts_numpy
def noise_reaction(
    explainer: Any,
    images: Any,
    amounts: Sequence[float] = NOISE_LEVELS,
    labels: Any | None = None,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Reaction of an explainer's maps and scores to salt-and-pepper noise, per image.

    Args:
        explainer: a :class:`~salience_audit.salience.extract.SalienceExtractor` (or an
            :class:`~salience_audit.models.audit_model.AuditModel`, explained with Grad-CAM).
        images: ``[B, 3, H, W]`` in [0, 1] (tensor or numpy array).
        amounts: noise amounts (0 is added when missing).
        labels: ``[B]`` true classes (0 Real, 1 Synthetic, -1 unknown) for ``noise_correct``.
        generator: the noise's random generator (on the images' device).
        batch_size: images per salience pass: None = one pass of B images per amount; a number
            packs whole amounts into passes of at most that many images, as the audit does.

    Returns ``amounts`` (the A amounts, ascending as given), ``noise_score``,
    ``noise_ssim``, ``noise_entropy`` (and with labels ``noise_correct``), each ``[B, A]``
    float64, and the areas ``noise_auc_*`` ``[B]`` over the amounts.
    """
    explain = as_explainer(explainer)
    x = images_tensor(images)
    levels = _levels(amounts)
    lab = None if labels is None else as_tensor(labels, "labels").long()
    clean = explain_pass(explain, x)
    amounts = [a for a in levels if a > 0]
    noisy = explain_variants(explain, [salt_and_pepper(x, a, generator=generator) for a in amounts], batch_size)
    curves = _curves(clean, dict(zip(amounts, noisy)), levels, lab, threshold)
    out: dict[str, Any] = {"amounts": levels}
    for key, values in curves.items():
        stacked = np.stack(values, axis=1)
        out[key] = torch.from_numpy(stacked)
        out[CURVES[key]] = torch.from_numpy(np.asarray(area_under_curve(levels, stacked)))
    return out


class NoiseReaction(Measure):
    """(b) Maps and scores under salt-and-pepper noise (one salience pass per run and amount)."""

    name = "noise"
    title = "(b) Reaction to out-of-set samples"
    question = "How does the model's focus change on inputs unlike its training data?"
    intro = (
        "Each image is corrupted with salt-and-pepper noise of amount a (fraction of pixel values replaced). "
        "For every a we record the synthetic score, correctness, SSIM of the noisy map to the clean map and "
        "the entropy of the noisy map; the areas under these curves over a summarise them. User-given "
        "out-of-set datasets are compared with the in-set data through the distribution of map entropy."
    )
    finding = "Human-guided models kept a more stable focus under noise than cross-entropy models."
    needs = Needs(passes=7)
    outputs = (
        Output(NOISE_SCORE, "Score under noise", "How does the synthetic score move as noise grows?",
               "probability (0-1)", "noise", headline_variants=()),
        Output(NOISE_CORRECT, "Accuracy under noise", "Does the model stay right as noise grows?",
               "fraction correct (0-1)", "noise", better="higher", headline_variants=()),
        Output(NOISE_SSIM, "Map SSIM to the clean map under noise",
               "Does the focus stay put when the input is corrupted?", "SSIM (-1 to 1)", "noise",
               better="higher", headline_variants=()),
        Output(NOISE_ENTROPY, "Map entropy under noise", "Does the focus spread out on corrupted input?",
               "normalised entropy (0-1)", "noise", headline_variants=()),
        Output(CURVES[NOISE_SCORE], "Area under the score-vs-noise curve",
               "How much synthetic score does the model give over all noise amounts?",
               "probability x amount (0-1)", "noise", primary=True),
        Output(CURVES[NOISE_CORRECT], "Area under the accuracy-vs-noise curve",
               "How often is the model right over all noise amounts?", "fraction correct x amount (0-1)",
               "noise", better="higher", headline_variants=()),
        Output(CURVES[NOISE_SSIM], "Area under the SSIM-vs-noise curve",
               "How well does the focus survive noise overall?", "SSIM x amount (-1 to 1)", "noise",
               better="higher", primary=True),
        Output(CURVES[NOISE_ENTROPY], "Area under the entropy-vs-noise curve",
               "How spread out is the focus over all noise amounts?", "entropy x amount (0-1)", "noise"),
    )
    functional = staticmethod(noise_reaction)
    constant_keys = ("amounts",)

    @staticmethod
    def _noisy_levels(ctx: BatchContext) -> list[float]:
        """Amounts that need their own pass: every a > 0, and 0 when the profile reads images differently."""
        return [a for a in ctx.config.noise_levels if a > 0 or ctx.conventions.noise_at_zero]

    def shared_variants(self, ctx: BatchContext) -> dict[str, Tensor]:
        return {f"noise/{variant_name(a)}": ctx.conventions.noisy(ctx.images, a, ctx.generator)
                for a in self._noisy_levels(ctx)}

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        levels = list(ctx.config.noise_levels)
        amounts = self._noisy_levels(ctx)
        noisy = run.outputs([f"noise/{variant_name(a)}" for a in amounts])
        curves = _curves(run.clean, dict(zip(amounts, noisy)), levels, ctx.labels, ctx.config.threshold)
        for k, a in enumerate(levels):
            name = variant_name(a)
            for key in (NOISE_SCORE, NOISE_CORRECT, NOISE_SSIM, NOISE_ENTROPY):
                emit(run.name, key, name, curves[key][k])
        for key, values in curves.items():
            emit(run.name, CURVES[key], "", area_under_curve(levels, np.stack(values, axis=1)))


callable_module(__name__)  # salience_audit.measures.noise_reaction(...) calls noise_reaction() above
