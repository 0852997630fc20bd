"""Progress bars: one rule for every long step (pre-flight, training, scoring, audit, summary).

A bar is drawn only when the caller asks for one (no ``--quiet``) *and* standard error is a
terminal; in CI logs and redirected output nothing is drawn, so logs hold no carriage-return
noise. tqdm implements the terminal test itself: ``disable=None`` means "off when not a TTY".
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["bar_disable", "progress_bar"]


def bar_disable(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a step: ``True`` (off) when not asked for, else ``None`` (off unless a TTY)."""
    return None if progress else True


def progress_bar(progress: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar that follows :func:`bar_disable` (``kwargs`` as for tqdm: total, desc, unit ...)."""
    return tqdm(disable=bar_disable(progress), **kwargs)
