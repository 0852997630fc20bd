"""Detection quality of a synthetic-face detector at a threshold.

Labels: 0 = Real (bona fide), 1 = Synthetic (attack). Scores: the model's probability of
"Synthetic" per image. An image is classified Synthetic when score > threshold; at the
default 0.5 this is exactly the argmax of a two-class softmax (a tie goes to Real, as
``argmax`` picks the first class).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import rankdata
from torch import Tensor

from salience_audit.stats.samples import ValueSample


def _as_array(values: Iterable[float] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def roc_auc(scores: Iterable[float] | np.ndarray | Tensor, labels: Iterable[int] | np.ndarray | Tensor) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney form).

    AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0), with R_1 the sum of the average ranks of
    the Synthetic (label 1) scores among all scores: the probability that a random
    Synthetic image scores above a random Real one, ties counting 1/2. NaN when only one
    class is present.
    """
    s, y = _as_array(scores), _as_array(labels)
    n_pos = int(np.sum(y == 1))
    n_neg = int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    rank_sum = float(ranks[y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def detection_metrics(
    scores: Iterable[float] | np.ndarray | Tensor,
    labels: Iterable[int] | np.ndarray | Tensor,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Accuracy, ROC-AUC and the presentation-attack error rates at ``threshold``.

    With predicted Synthetic = (score > threshold):
    - ``accuracy`` = fraction of images classified correctly;
    - ``roc_auc`` = :func:`roc_auc` (threshold-free; NaN with one class);
    - ``apcer`` = fraction of Synthetic (label 1) images classified Real (NaN without any);
    - ``bpcer`` = fraction of Real (label 0) images classified Synthetic (NaN without any);
    - ``acer`` = (apcer + bpcer) / 2;
    - ``n``, ``n_real``, ``n_synthetic`` = counts.
    An empty input gives NaN rates and n = 0. Labels must be 0 or 1 and scores finite.
    """
    s, y = _as_array(scores), _as_array(labels)
    if s.shape != y.shape:
        raise ValueError(f"detection_metrics needs one label per score, got {s.size} scores and {y.size} labels")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("detection_metrics: labels must be 0 (Real) or 1 (Synthetic)")
    if not np.all(np.isfinite(s)):
        raise ValueError("detection_metrics: scores must be finite")
    nan = float("nan")
    synthetic = y == 1
    real = y == 0
    predicted = s > threshold
    n_syn, n_real = int(synthetic.sum()), int(real.sum())
    apcer = float(np.mean(~predicted[synthetic])) if n_syn else nan
    bpcer = float(np.mean(predicted[real])) if n_real else nan
    return {
        "accuracy": float(np.mean(predicted == synthetic)) if s.size else nan,
        "roc_auc": roc_auc(s, y),
        "apcer": apcer,
        "bpcer": bpcer,
        "acer": (apcer + bpcer) / 2.0,
        "n": float(s.size),
        "n_real": float(n_real),
        "n_synthetic": float(n_syn),
    }


class DetectionState:
    """Labelled scores of one run on one dataset: counts at the threshold, scores per class."""

    __slots__ = ("flagged", "missed", "neg", "pos", "threshold")

    def __init__(self, capacity: int | None, seed: int, threshold: float) -> None:
        self.threshold = threshold
        self.missed = 0  # Synthetic (1) images with score <= threshold (classified Real)
        self.flagged = 0  # Real (0) images with score > threshold (classified Synthetic)
        self.pos = ValueSample(capacity, seed)
        self.neg = ValueSample(capacity, seed + 1)

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        pos, neg = scores[labels == 1], scores[labels == 0]
        self.missed += int(np.sum(pos <= self.threshold))
        self.flagged += int(np.sum(neg > self.threshold))
        self.pos.update(pos)
        self.neg.update(neg)

    @classmethod
    def merged(cls, parts: Sequence[DetectionState], capacity: int | None, seed: int) -> DetectionState:
        out = cls(capacity, seed, parts[0].threshold)
        out.missed = sum(p.missed for p in parts)
        out.flagged = sum(p.flagged for p in parts)
        out.pos = ValueSample.merged([p.pos for p in parts], capacity, seed)
        out.neg = ValueSample.merged([p.neg for p in parts], capacity, seed + 1)
        return out

    @property
    def exact(self) -> bool:
        return self.pos.exact and self.neg.exact

    def metrics(self) -> dict[str, float]:
        """:func:`detection_metrics` of every score when held, else from the exact counts and sampled ROC-AUC.

        With n_1 Synthetic and n_0 Real images, m missed Synthetic and f flagged Real ones:
        accuracy = (n - m - f) / n, APCER = m / n_1, BPCER = f / n_0, ACER = (APCER + BPCER) / 2;
        the ROC-AUC is that of the two class samples (the AUC does not depend on the class ratio).
        """
        pos, neg = self.pos.values(), self.neg.values()
        scores = np.concatenate([pos, neg])
        labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
        if self.exact:
            return detection_metrics(scores, labels, threshold=self.threshold)
        n_syn, n_real = self.pos.n, self.neg.n
        n = n_syn + n_real
        nan = float("nan")
        apcer = self.missed / n_syn if n_syn else nan
        bpcer = self.flagged / n_real if n_real else nan
        return {
            "accuracy": (n - self.missed - self.flagged) / n if n else nan,
            "roc_auc": roc_auc(scores, labels),
            "apcer": apcer,
            "bpcer": bpcer,
            "acer": (apcer + bpcer) / 2.0,
            "n": float(n),
            "n_real": float(n_real),
            "n_synthetic": float(n_syn),
        }

    def stored(self) -> int:
        return self.pos.stored() + self.neg.stored()
