"""Detection: the score P(Synthetic) of every image and whether the decision is right.

Rows ``score`` (P(Synthetic) = softmax(logits)[:, 1]) and ``correct`` (1 when the decision
"Synthetic if score > threshold" equals the label, 0 otherwise, NaN for unlabelled images)
for every run, from the clean pass the audit makes anyway. The report turns them into
accuracy, ROC-AUC and APCER / BPCER / ACER (:mod:`salience_audit.stats.detection`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import BatchContext, Emit, Measure, Needs, Output, RunView, as_tensor, to_numpy
from salience_audit.models.scores import synthetic_probability

SCORE = "score"
CORRECT = "correct"


def correct(logits: Tensor, labels: Tensor, threshold: float = 0.5) -> np.ndarray:
    """1.0 where (P(Synthetic) > threshold) equals the label, 0.0 where not, NaN where the label is < 0; ``[B]``.

    At the default threshold 0.5 this is the argmax of two logits (a tie counts as Real).
    """
    pred = (synthetic_probability(logits) > threshold).to(labels.dtype)
    right = to_numpy((pred == labels.to(pred.device)).to(torch.float64))
    right[to_numpy(labels) < 0] = np.nan
    return right


@accepts_numpy
def detection(logits: Any, labels: Any | None = None, threshold: float = 0.5) -> dict[str, Tensor]:
    """Per-image ``score`` ``[B]`` (P(Synthetic)) and, with labels, ``correct`` ``[B]`` (1 / 0 / NaN)."""
    lg = as_tensor(logits, "logits")
    out = {SCORE: synthetic_probability(lg)}
    if labels is not None:
        out[CORRECT] = torch.from_numpy(correct(lg, as_tensor(labels, "labels").long(), threshold))
    return out


class Detection(Measure):
    """Score and correctness of every image (always computed; no extra pass)."""

    name = "detection"
    title = "Detection quality"
    question = "How well do the models separate real from synthetic faces?"
    intro = (
        "Accuracy, ROC-AUC and the ISO/IEC 30107-3 style error rates at the decision threshold, per dataset. "
        "APCER is the fraction of synthetic images accepted as real, BPCER the fraction of real images "
        "rejected as synthetic, ACER their mean."
    )
    needs = Needs(passes=0, labels=True)
    always = True
    outputs = (
        Output(SCORE, "Synthetic score", "What probability of 'synthetic' does the model give?",
               "probability (0-1)", "detection"),
        Output(CORRECT, "Accuracy", "How often is the model right?", "fraction correct (0-1)",
               "detection", better="higher", primary=True),
    )
    functional = staticmethod(detection)

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        emit(run.name, SCORE, "", run.score)
        emit(run.name, CORRECT, "", correct(run.clean.logits, ctx.labels, ctx.config.threshold))
