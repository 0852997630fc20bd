"""Salt-and-pepper corruption of [0, 1] images (measure (b), reaction to out-of-set samples).

Each element (pixel *and* channel, independently) of the image is replaced with probability
``amount``; a replaced element becomes 1 ("salt") or 0 ("pepper") with equal probability.
This is the semantics of ``skimage.util.random_noise(x, mode="s&p", amount=a,
salt_vs_pepper=0.5)``, computed in one batched draw on the image's device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NOISE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 1.0)
"""The corruption amounts of the published measure."""


def _check_amount(amount: float) -> float:
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise ValueError(f"salt-and-pepper amount must be a number in [0, 1], got {amount!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"salt-and-pepper amount must be in [0, 1], got {amount!r}")
    return value


def salt_and_pepper(x01: Tensor, amount: float, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt ``x01`` (any shape, values in [0, 1]) with salt-and-pepper noise.

    With u ~ U[0, 1) drawn independently for every element::

        out = 1      where u < amount / 2          (salt,   probability amount / 2)
        out = 0      where amount / 2 <= u < amount (pepper, probability amount / 2)
        out = x01    elsewhere                      (kept,   probability 1 - amount)

    ``amount = 0`` returns an unchanged copy (no random numbers are drawn); ``amount = 1``
    replaces every element. ``generator`` (a ``torch.Generator`` on ``x01``'s device) makes
    the draw reproducible; ``None`` uses torch's global generator.

    Raises ``ValueError`` for an amount outside [0, 1] (or not finite), a non-floating
    tensor, or a generator on another device.
    """
    a = _check_amount(amount)
    if not torch.is_floating_point(x01):
        raise ValueError(f"salt_and_pepper expects a floating-point image in [0, 1], got dtype {x01.dtype}")
    if a == 0.0:
        return x01.clone()
    if generator is not None and generator.device.type != x01.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the image is on {x01.device}; "
            "create it with torch.Generator(device=x01.device)"
        )
    u = torch.rand(x01.shape, generator=generator, device=x01.device, dtype=torch.float32)
    salt = torch.ones((), dtype=x01.dtype, device=x01.device)
    pepper = torch.zeros((), dtype=x01.dtype, device=x01.device)
    return torch.where(u < a / 2.0, salt, torch.where(u < a, pepper, x01))


def uint8_round_trip(x01: Tensor) -> Tensor:
    """The original study's noise-script round trip of a [0, 1] image through 8 bits.

    The script read 8-bit images q, made them float with skimage (q * (1/255), float64),
    added the noise and saved ``(y * 255).astype(uint8)``, which truncates:
    out = trunc(255 * (q * (1/255))) / 255 with q = round(255 x). For 24 of the 256 levels
    the float product falls just below q, so they come back one level lower, even at noise
    amount 0. Salt (1) and pepper (0) are fixed points, so the trip commutes with
    :func:`salt_and_pepper`. Returns ``x01``'s dtype and device.
    """
    if not torch.is_floating_point(x01):
        raise ValueError(f"uint8_round_trip expects a floating-point image in [0, 1], got dtype {x01.dtype}")
    q = torch.round(x01.to(torch.float64) * 255.0).clamp_(0.0, 255.0)
    return (torch.trunc(q * (1.0 / 255.0) * 255.0) / 255.0).to(x01.dtype)
