"""The detector's score of an image: the probability of the class "Synthetic".

Class index 1 is the attack class, "Synthetic" (index 0 is bona fide, "Real"; see
:data:`salience_audit.data.sample.CLASS_NAMES`). The score is computed in float32 whatever
the logits' dtype (fp16 logits under mixed precision would round the probability).
"""

from __future__ import annotations

import torch
from torch import Tensor

SYNTHETIC = 1
"""Index of the class "Synthetic" in a two-class classifier's logits."""


def synthetic_probability(logits: Tensor) -> Tensor:
    """``softmax(logits)[:, 1]`` in float32: P(Synthetic) of each image, ``[B]`` from logits ``[B, C]``."""
    return torch.softmax(logits.detach().float(), dim=1)[:, SYNTHETIC]


def class_probability(logits: Tensor, classes: Tensor) -> Tensor:
    """``softmax(logits)[b, classes[b]]`` in float32: the probability of a chosen class per image, ``[B]``."""
    probs = torch.softmax(logits.detach().float(), dim=1)
    return probs.gather(1, classes.to(probs.device).view(-1, 1).long()).squeeze(1)
