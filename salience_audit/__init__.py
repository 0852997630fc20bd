"""salience-audit: explain image classifiers at scale through their salience maps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("salience-audit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__", "read_results"]


def read_results(path: str):  # noqa: ANN201 - AuditResults, imported lazily (pandas/pyarrow)
    """The audit folder at ``path`` as an :class:`~salience_audit.notebook.AuditResults` (rows, summary, report)."""
    from salience_audit.notebook import AuditResults

    return AuditResults(path)
