"""The operations whose convention depends on the audit's profile (see :mod:`salience_audit.profiles`).

The batch loop asks one :class:`Conventions` object for them, so the two profiles share every
other line of the audit:

| operation | ``default`` | ``study`` |
| --- | --- | --- |
| Grad-CAM gradients (in-place activation after the CAM layer) | of the post-activation tensor | of the tensor before it |
| map upscaling | torch bicubic (a = -0.75) of the float map | Pillow bicubic (a = -0.5) of floor(255 S) |
| guided blur | float filters, levels 10 G / max G (object: 10 - that) | uint8 filters, object levels from 255 - map |
| noisy images | salt and pepper | salt and pepper after the 8-bit round trip, also at amount 0 |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from salience_audit.perturb import blur, noise, study_blur
from salience_audit.profiles import DEFAULT_PROFILE, Profile, check_profile
from salience_audit.salience.normalize import upscale
from salience_audit.salience.pil_resize import upscale_floored_pil


@dataclass(frozen=True)
class Conventions:
    """Profile-dependent operations of an audit."""

    profile: Profile = DEFAULT_PROFILE

    def __post_init__(self) -> None:
        check_profile(self.profile)

    @property
    def study(self) -> bool:
        return self.profile == "study"

    @property
    def grad_before_inplace(self) -> bool:
        """Whether explainers differentiate the CAM layer output before an in-place activation."""
        return self.study

    @property
    def noise_at_zero(self) -> bool:
        """Whether noise amount 0 needs its own salience pass (the round-tripped image differs from the clean one)."""
        return self.study

    def upscale(self, maps: Tensor, size: int) -> Tensor:
        """Maps ``[B, h, w]`` in [0, 1] at the input size ``size``."""
        return upscale_floored_pil(maps, size) if self.study else upscale(maps, size)

    def guided_blur(self, x01: Tensor, maps_up: Tensor, mode: blur.Mode) -> Tensor:
        """Salience-guided blur of ``x01`` by the upscaled maps (``background`` or ``object``)."""
        if self.study:
            return study_blur.study_guided_blur(x01, maps_up, mode)
        return blur.guided_blur(x01, maps_up, mode=mode)

    def noisy(self, x01: Tensor, amount: float, generator: torch.Generator | None) -> Tensor:
        """Salt-and-pepper noise of the given amount (amount 0: the image as the profile reads it)."""
        if self.study:
            return noise.salt_and_pepper(noise.uint8_round_trip(x01), amount, generator=generator)
        return noise.salt_and_pepper(x01, amount, generator=generator)
