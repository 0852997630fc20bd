"""Measures: salience maps (and the model passes they need) to per-image numbers.

Each measure lives in one module with its definition, its rows and its metadata, in two
forms sharing one implementation (the modules ``entropy``, ``stability``,
``noise_reaction``, ``equivariance``, ``degradation`` and ``deletion`` can be called like
their function: ``measures.entropy(maps)`` is ``measures.entropy.entropy(maps)``):

- a function on tensors or numpy arrays returning per-image values (documented shapes):
  :func:`entropy`, :func:`stability`, :func:`noise_reaction`, :func:`equivariance`,
  :func:`degradation`, :func:`deletion`, :func:`human_agreement`, :func:`detection`;
- a :class:`Measure` subclass (:class:`Entropy`, :class:`Stability`, :class:`NoiseReaction`,
  :class:`Transforms`, :class:`Degradation`, :class:`Deletion`, :class:`HumanAgreement`,
  :class:`Detection`) holding the metadata (``name``, ``question``, ``outputs`` with their
  better direction and the study's finding, ``needs``), the hooks the audit's batch loop
  calls, and ``update()`` / ``compute()`` for a loop over your own DataLoader.

The audit runs the registered measures (:func:`register`, :func:`registered`); a measure
you register appears in the rows, ``summary.json`` and the report. Building blocks:
:mod:`.similarity` (SSIM, Spearman, top-k IoU), :mod:`.curve` (area under a curve).

Example::

    import torch
    import salience_audit as sa

    maps = torch.rand(8, 7, 7)                        # 8 maps of 7 x 7 cells in [0, 1]
    sa.measures.entropy(maps)                         # {entropy, entropy_norm, spatial_entropy}: [8] each
    sa.measures.stability([maps, torch.rand(8, 7, 7)])  # {pairs [1, 2], stability_ssim [8, 1], ...}
"""

from __future__ import annotations

from salience_audit.measures import degradation, deletion, entropy, equivariance, noise_reaction, stability
from salience_audit.measures.base import BatchContext, Measure, Needs, Output, RunView
from salience_audit.measures.decision import Detection, detection
from salience_audit.measures.degradation import Degradation
from salience_audit.measures.deletion import Deletion
from salience_audit.measures.entropy import Entropy
from salience_audit.measures.equivariance import Transforms
from salience_audit.measures.human import HumanAgreement, human_agreement
from salience_audit.measures.noise_reaction import NoiseReaction
from salience_audit.measures.registry import get, names, register, registered, unregister
from salience_audit.measures.stability import Stability

for _cls in (Detection, Entropy, HumanAgreement, NoiseReaction, Transforms, Degradation, Deletion, Stability):
    if _cls.name not in names():
        register(_cls)
del _cls

__all__ = [
    "BatchContext",
    "Degradation",
    "Deletion",
    "Detection",
    "Entropy",
    "HumanAgreement",
    "Measure",
    "Needs",
    "NoiseReaction",
    "Output",
    "RunView",
    "Stability",
    "Transforms",
    "degradation",
    "deletion",
    "detection",
    "entropy",
    "equivariance",
    "get",
    "human_agreement",
    "names",
    "noise_reaction",
    "register",
    "registered",
    "stability",
    "unregister",
]
