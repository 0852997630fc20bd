"""Detection metrics against hand-worked examples and a brute-force pairwise AUC."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from salience_audit.stats.detection import detection_metrics, roc_auc


def _brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_hand_worked_example() -> None:
    scores = [0.9, 0.4, 0.6, 0.2, 0.7, 0.5]
    labels = [1, 1, 0, 0, 1, 0]
    out = detection_metrics(scores, labels)
    # Predicted Synthetic (> 0.5): 0.9, 0.6, 0.7 -> [1, 0, 1, 0, 1, 0]; 0.5 is Real.
    # Correct: idx 0, 3, 4, 5 -> 4/6. Synthetic idx 0, 1, 4: one (0.4) called Real -> APCER 1/3.
    # Real idx 2, 3, 5: one (0.6) called Synthetic -> BPCER 1/3.
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["apcer"] == pytest.approx(1 / 3)
    assert out["bpcer"] == pytest.approx(1 / 3)
    assert out["acer"] == pytest.approx(1 / 3)
    # Pairs (pos, neg): 0.9 beats all 3; 0.4 beats 0.2 only; 0.7 beats all 3 -> 7/9.
    assert out["roc_auc"] == pytest.approx(7 / 9)
    assert (out["n"], out["n_real"], out["n_synthetic"]) == (6, 3, 3)


def test_threshold_changes_decisions_not_auc() -> None:
    scores = torch.tensor([0.9, 0.4, 0.6, 0.2, 0.7, 0.5])
    labels = torch.tensor([1, 1, 0, 0, 1, 0])
    out = detection_metrics(scores, labels, threshold=0.3)
    # Synthetic predictions: all but 0.2 -> APCER 0, BPCER 2/3, accuracy 4/6.
    assert out["apcer"] == 0.0
    assert out["bpcer"] == pytest.approx(2 / 3)
    assert out["acer"] == pytest.approx(1 / 3)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["roc_auc"] == pytest.approx(7 / 9)


def test_auc_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 6, size=n) / 5.0  # many ties
        labels = rng.integers(0, 2, size=n)
        if labels.min() == labels.max():
            labels[0] = 1 - labels[0]
        assert roc_auc(scores, labels) == pytest.approx(_brute_auc(scores, labels), abs=1e-12)


def test_perfect_and_inverted_and_tied() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5


def test_single_class() -> None:
    out = detection_metrics([0.9, 0.2, 0.7], [1, 1, 1])
    assert math.isnan(out["roc_auc"]) and math.isnan(out["bpcer"]) and math.isnan(out["acer"])
    assert out["apcer"] == pytest.approx(1 / 3)
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_empty_and_invalid() -> None:
    out = detection_metrics([], [])
    assert out["n"] == 0 and math.isnan(out["accuracy"]) and math.isnan(out["roc_auc"])
    with pytest.raises(ValueError, match="0 \\(Real\\) or 1"):
        detection_metrics([0.5, 0.5], [0, 2])
    with pytest.raises(ValueError, match="one label per score"):
        detection_metrics([0.5, 0.5], [0])
    with pytest.raises(ValueError, match="finite"):
        detection_metrics([float("nan"), 0.5], [0, 1])
