"""(e) Salience-guided degradation: does the model depend on the regions it highlights?

Each image is blurred where its map is low (mode ``background``: keep what the model looks
at) or where it is high (mode ``object``), with a per-pixel Gaussian blur whose strength
follows the upscaled map (:func:`salience_audit.perturb.blur.guided_blur`); the degraded
images depend on the run's own map, so each run makes its own. Rows (variant = mode):

- ``degrade_score_change`` = P(Synthetic | degraded) - P(Synthetic | clean);
- ``degrade_correct``: decision correctness on the degraded image (NaN unlabelled);
- ``degrade_ssim``: SSIM of the degraded image's map to the clean map.

Derived at summary time (:meth:`Degradation.derive`), per image and run:

- ``degrade_accuracy_change`` (variant = mode) = degrade_correct - correct;
- ``degrade_true_score_drop`` (variant = mode): the probability of the *true* class lost,
  -(score change) for synthetic images, +(score change) for real ones, NaN unlabelled;
- ``degrade_faithfulness`` = object-mode drop - background-mode drop (higher = the model
  depends more on the regions it highlights).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
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
from salience_audit.measures.decision import CORRECT, correct
from salience_audit.models.scores import synthetic_probability
from salience_audit.perturb.blur import guided_blur
from salience_audit.salience.normalize import upscale

MODES: tuple[str, str] = ("background", "object")
DEGRADE_SCORE_CHANGE = "degrade_score_change"
DEGRADE_CORRECT = "degrade_correct"
DEGRADE_SSIM = "degrade_ssim"
DEGRADE_ACCURACY_CHANGE = "degrade_accuracy_change"
DEGRADE_TRUE_SCORE_DROP = "degrade_true_score_drop"
DEGRADE_FAITHFULNESS = "degrade_faithfulness"


def true_class_drop(score_change: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Probability of the true class lost: -change for Synthetic (label 1), +change for Real (0), NaN unknown."""
    labels = np.asarray(labels)
    sign = np.where(labels == 1, -1.0, np.where(labels == 0, 1.0, np.nan))
    return np.asarray(score_change, dtype=np.float64) * sign


def _mode_rows(clean: Any, outs: list[Any], score: Tensor, labels: Tensor, threshold: float) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {DEGRADE_SCORE_CHANGE: [], DEGRADE_CORRECT: [], DEGRADE_SSIM: []}
    for out in outs:
        rows[DEGRADE_SCORE_CHANGE].append(synthetic_probability(out.logits) - score)
        rows[DEGRADE_CORRECT].append(correct(out.logits, labels, threshold))
        rows[DEGRADE_SSIM].append(similarity.ssim_maps(out.maps.detach(), clean))
    return rows


@accepts_numpy
def degradation(
    explainer: Any, images: Any, labels: Any, threshold: float = 0.5, batch_size: int | None = None
) -> dict[str, Tensor]:
    """Salience-guided degradation of each image, in both modes.

    ``images`` ``[B, 3, H, W]`` in [0, 1], ``labels`` ``[B]`` (0 Real, 1 Synthetic, -1 unknown);
    tensors or numpy arrays. Returns ``degrade_score_change``, ``degrade_correct``,
    ``degrade_ssim``, ``degrade_true_score_drop`` and ``degrade_accuracy_change``, each
    ``[B, 2]`` float64 (columns: background, object), and ``degrade_faithfulness`` ``[B]``.
    The two blurred versions get one pass of B images each, or are packed into passes of at
    most ``batch_size`` images when it is given (as the audit does).
    """
    explain = as_explainer(explainer)
    x = images_tensor(images)
    lab = as_tensor(labels, "labels").long().to(x.device)
    clean = explain_pass(explain, x)
    maps_up = upscale(clean.maps, int(x.shape[-1]))
    outs = explain_variants(explain, [guided_blur(x, maps_up, mode=m) for m in MODES], batch_size)
    score = synthetic_probability(clean.logits)
    rows = _mode_rows(clean.maps, outs, score, lab, threshold)
    table = {k: np.stack([to_numpy(v) for v in values], axis=1) for k, values in rows.items()}
    labels_np = to_numpy(lab)
    drop = true_class_drop(table[DEGRADE_SCORE_CHANGE], labels_np[:, None])
    table[DEGRADE_TRUE_SCORE_DROP] = drop
    table[DEGRADE_ACCURACY_CHANGE] = table[DEGRADE_CORRECT] - correct(clean.logits, lab, threshold)[:, None]
    out = {k: torch.from_numpy(v) for k, v in table.items()}
    out[DEGRADE_FAITHFULNESS] = torch.from_numpy(drop[:, 1] - drop[:, 0])
    return out


class Degradation(Measure):
    """(e) Scores and maps of images blurred by their own salience (two salience passes per run)."""

    name = "degradation"
    title = "(e) Salience-guided degradation"
    question = "Does the model depend on the regions it highlights?"
    intro = (
        "'background' mode blurs where the model does not look, 'object' mode blurs where it looks. A model "
        "whose salience is faithful loses much more confidence in the true class (and accuracy) in object "
        "mode than in background mode. Faithfulness = object-mode drop minus background-mode drop of the "
        "true-class probability (labelled images only). Deletion / insertion curves remove / restore pixels "
        "in order of salience, with a random-order control."
    )
    needs = Needs(passes=2, labels=True)
    outputs = (
        Output(DEGRADE_FAITHFULNESS, "Degradation faithfulness",
               "Does blurring what the model looks at hurt more than blurring the rest?",
               "probability (object drop - background drop)", "degradation", better="higher", primary=True,
               derived=True),
        Output(DEGRADE_TRUE_SCORE_DROP, "True-class probability drop",
               "How much confidence in the true class is lost when part of the image is blurred?",
               "probability drop", "degradation", better_by_variant={"background": "lower", "object": "higher"},
               headline_variants=MODES,
               note="Derived: -score change for synthetic images, +score change for real ones.", primary=True,
               derived=True),
        Output(DEGRADE_ACCURACY_CHANGE, "Accuracy change under degradation",
               "How much accuracy is lost when part of the image is blurred?",
               "accuracy change (fraction, -1 to 1)", "degradation",
               better_by_variant={"background": "zero", "object": "lower"}, headline_variants=MODES,
               primary=True, derived=True),
        Output(DEGRADE_SCORE_CHANGE, "Score change under degradation",
               "How does the synthetic score move when part of the image is blurred?",
               "score(degraded) - score(clean), probability", "degradation", headline_variants=()),
        Output(DEGRADE_CORRECT, "Accuracy after degradation", "How often is the model right after blurring?",
               "fraction correct (0-1)", "degradation",
               better_by_variant={"background": "higher", "object": "lower"}, headline_variants=()),
        Output(DEGRADE_SSIM, "Map SSIM after degradation", "Does the map survive the degradation?",
               "SSIM (-1 to 1)", "degradation", headline_variants=MODES),
    )
    functional = staticmethod(degradation)

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        degraded = [ctx.conventions.guided_blur(ctx.images, run.maps_up, m) for m in MODES]
        outs = run.explain(degraded)
        rows = _mode_rows(run.maps, outs, run.score, ctx.labels, ctx.config.threshold)
        for k, mode in enumerate(MODES):
            for key in (DEGRADE_SCORE_CHANGE, DEGRADE_CORRECT, DEGRADE_SSIM):
                emit(run.name, key, mode, rows[key][k])

    def derive(self, rows: pd.DataFrame) -> list[pd.DataFrame]:
        """Accuracy change, true-class probability drop and faithfulness per image and run."""
        key = ["dataset", "index", "group", "run"]
        parts: list[pd.DataFrame] = []
        clean = rows[rows["measure"] == CORRECT][[*key, "value"]]
        clean = clean.groupby(key, observed=True, sort=False)["value"].mean().rename("clean").reset_index()
        deg_correct = rows[rows["measure"] == DEGRADE_CORRECT]
        if not deg_correct.empty and not clean.empty:
            merged = deg_correct.merge(clean, on=key, how="inner")
            merged["value"] = merged["value"] - merged["clean"]
            merged["measure"] = DEGRADE_ACCURACY_CHANGE
            parts.append(merged.drop(columns="clean"))
        change = rows[rows["measure"] == DEGRADE_SCORE_CHANGE]
        if not change.empty:
            drop = change.copy()
            drop["value"] = true_class_drop(drop["value"].to_numpy(), drop["label"].to_numpy())
            drop["measure"] = DEGRADE_TRUE_SCORE_DROP
            parts.append(drop)
            wide = drop.pivot_table(index=[*key, "path", "label"], columns="variant", values="value",
                                    aggfunc="mean", observed=True)
            if set(MODES) <= set(wide.columns):
                faith = (wide["object"] - wide["background"]).rename("value").reset_index()
                faith["measure"] = DEGRADE_FAITHFULNESS
                faith["variant"] = ""
                parts.append(faith)
        return parts


callable_module(__name__)  # salience_audit.measures.degradation(...) calls degradation() above
