"""Exceptions shared by every stage. Messages always name the file (and line) at fault."""

from __future__ import annotations

from pathlib import Path


class SalienceAuditError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(SalienceAuditError):
    """Bad user input: a manifest line, an image, a checkpoint, a config file.

    ``str(err)`` reads ``"<path>:<line>: <problem>"`` (line omitted when unknown).
    """

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{problem}")


class ModelError(SalienceAuditError):
    """A model cannot be built, loaded, or explained (e.g. no layer for CAM)."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are requested but not present in the local cache (offline)."""
