"""One image of a manifest, with where it was read from."""

from __future__ import annotations

import sys
from dataclasses import dataclass

CLASS_NAMES: tuple[str, str] = ("Real", "Synthetic")
"""Index 0 is bona fide (Real), index 1 is the attack class (Synthetic)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """An image to train on or audit.

    Attributes:
        path: absolute or root-joined path of the image file.
        label: 0 for Real, 1 for Synthetic (-1 when unknown, e.g. out-of-set data).
        split: ``train``, ``test`` (validation in the original study) or ``audit``.
        dataset: name of the dataset (manifest / generator) the image belongs to.
        human_map: path of a human annotation map for the image, if any.
        source: the manifest file the sample was read from.
        line: 1-based line number in ``source`` (0 when not from a text file).
        key: the path as written in the manifest (kept for reports and joins).
    """

    path: str
    label: int
    split: str = "test"
    dataset: str = "default"
    human_map: str | None = None
    source: str = ""
    line: int = 0
    key: str = ""

    def __post_init__(self) -> None:
        # Millions of samples share a few split / dataset / source names: keep one copy of each.
        # (With the slots above, a sample costs about 0.3 KB, most of it its two path strings.)
        for name in ("split", "dataset", "source"):
            value = getattr(self, name)
            if type(value) is str:
                object.__setattr__(self, name, sys.intern(value))
