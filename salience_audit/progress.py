"""Progress bars: one rule for every long step (pre-flight, training, scoring, audit, summary, report).

A bar is drawn only when the caller asks for one (no ``--quiet``) *and* standard error is a
terminal; in CI logs and redirected output nothing is drawn, so logs hold no carriage-return
noise. tqdm implements the terminal test itself: ``disable=None`` means "off when not a TTY".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from tqdm.auto import tqdm

__all__ = ["bar_disable", "progress_bar", "progress_scope"]

_SHOW: ContextVar[bool] = ContextVar("salience_audit_progress", default=False)
"""Whether steps deep in the library (reading the results for the summary and report) draw bars.

Off by default (Python callers); the command line turns it on for a command unless ``--quiet``.
"""


@contextlib.contextmanager
def progress_scope(show: bool) -> Iterator[None]:
    """Within the block, :func:`progress_bar` with ``progress=None`` follows ``show``."""
    token = _SHOW.set(show)
    try:
        yield
    finally:
        _SHOW.reset(token)


def bar_disable(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a step: ``True`` (off) when not asked for, else ``None`` (off unless a TTY)."""
    return None if progress else True


def progress_bar(progress: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that follows :func:`bar_disable` (``kwargs`` as for tqdm: total, desc, unit ...).

    ``progress=None``: as the enclosing :func:`progress_scope` says (off outside one).
    """
    return tqdm(disable=bar_disable(_SHOW.get() if progress is None else progress), **kwargs)
