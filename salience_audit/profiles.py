"""Measurement profiles: which conventions an audit's numbers follow.

- ``default``: the corrected, textbook definitions documented in docs/measures.md.
- ``study``: the conventions of the original study's published code (Crum et al., 2023),
  reproduced where that code is deterministic, so that numbers compare with the paper's:
  Grad-CAM gradients taken before an in-place activation that follows the target layer,
  maps floored to 8 bits before a PIL bicubic upscale, object-mode blur levels from the
  inverted map, Gaussian filters that truncate to uint8 after each pass, and the noise
  script's ``(x * 255).astype(uint8)`` round trip. docs/fidelity.md lists each one with
  the published file and line, and the measured difference.

Numbers of two profiles measure different things: every place that merges or compares two
audits calls :func:`require_same_profile` and refuses a mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from salience_audit.errors import InputError

Profile = Literal["default", "study"]

PROFILES: tuple[str, ...] = ("default", "study")
DEFAULT_PROFILE: Profile = "default"

DESCRIPTIONS: dict[str, str] = {
    "default": "corrected, textbook definitions (docs/measures.md)",
    "study": "conventions of the original study's published code, reproduced so that numbers compare "
    "with the paper's (docs/fidelity.md)",
}


def check_profile(value: Any, source: str | Path | None = None) -> Profile:
    """``value`` as a profile name, or an :class:`InputError` naming the allowed values (and ``source``)."""
    if value not in PROFILES:
        raise InputError(f"profile must be one of {', '.join(PROFILES)}; got {value!r}", source)
    return value  # type: ignore[return-value]


def profile_of(meta: Mapping[str, Any], source: str | Path | None = None) -> Profile:
    """Profile recorded in an ``audit.json`` mapping (``source`` names it in errors).

    Audits written before profiles existed followed the default conventions, so a missing
    key reads as ``default``.
    """
    value = meta.get("profile")
    if value is None:
        value = (meta.get("config") or {}).get("profile", DEFAULT_PROFILE)
    return check_profile(value, source)


def require_same_profile(
    meta_a: Mapping[str, Any], meta_b: Mapping[str, Any], where_a: str | Path, where_b: str | Path
) -> Profile:
    """The common profile of two audits, or an :class:`InputError` when they differ."""
    a, b = profile_of(meta_a, Path(where_a) / "audit.json"), profile_of(meta_b, Path(where_b) / "audit.json")
    if a != b:
        raise InputError(
            f"refusing to compare or merge audits of different profiles: {where_a} was computed with "
            f"profile {a!r} and {where_b} with profile {b!r}; their numbers follow different conventions "
            "(docs/fidelity.md). Re-run one of them with --profile " + a
        )
    return a
