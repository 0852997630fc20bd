"""Exceptions shared by every stage. Messages always name the file (and line) at fault.

Each class carries the exit status the command line returns for it (``exit_code``);
the statuses are documented in docs/cli.md:

====  ==========================================================================
0     success
1     bad input (a manifest line, an image, a checkpoint, a config file, a model)
2     usage: an unknown flag, a missing required flag, a flag value of the wrong type
3     a missing optional dependency (the message names the extra to install)
4     an output file could not be written (disk full, permissions); finished work is kept
130   interrupted (Ctrl-C); finished shards/epochs are kept and the same command resumes
143   terminated (SIGTERM, e.g. a batch scheduler's time limit); kept and resumable like 130
====  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_MISSING_EXTRA = 3
EXIT_WRITE_FAILED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class SalienceAuditError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT


class UsageError(SalienceAuditError):
    """Flags that contradict each other (argparse itself reports unknown or mistyped flags, also status 2)."""

    exit_code = EXIT_USAGE


class OutputWriteError(SalienceAuditError):
    """An output file could not be written (full disk, permissions); what was finished is kept."""

    exit_code = EXIT_WRITE_FAILED


class MissingExtraError(SalienceAuditError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    exit_code = EXIT_MISSING_EXTRA

    def __init__(self, module: str, extra: str, purpose: str, hint: str = "") -> None:
        self.module = module
        self.extra = extra
        package = _PACKAGE_OF.get(module.split(".")[0], module.split(".")[0])
        super().__init__(
            f"{purpose} needs the optional package {package!r}: pip install \"salience-audit[{extra}]\"{hint}"
        )


_PACKAGE_OF = {"skimage": "scikit-image", "gan_face_generate": "gan-face-generate", "pytorch_grad_cam": "grad-cam"}
"""Import name -> the name pip installs, where they differ."""


def require_extra(module: str, extra: str, purpose: str, hint: str = ""):  # noqa: ANN201 - returns the module
    """Import an optional dependency, or raise :class:`MissingExtraError` naming the extra to install.

    ``hint`` is appended to the one-line message (e.g. another install route on some Python versions).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        # Only the optional package itself missing counts; a broken install re-raises as is.
        missing = getattr(err, "name", None)
        if missing is not None and missing.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtraError(module, extra, purpose, hint) from err


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
