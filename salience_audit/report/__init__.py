"""Turn an audit's per-sample results into answers: summary numbers, figures, HTML and Markdown.

Public entry points (imported lazily, so ``import salience_audit.report`` stays cheap):

- :func:`summarize` / :func:`write_summary` / :func:`load_results` (:mod:`.summary`);
- :func:`write_report` (:mod:`.html`): ``OUT/report/index.html`` and ``OUT/report/report.md``;
- :func:`selection_table` (:mod:`.selection`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_results": "salience_audit.report.summary.build",
    "summarize": "salience_audit.report.summary.build",
    "write_summary": "salience_audit.report.summary.build",
    "write_report": "salience_audit.report.render.html",
    "selection_table": "salience_audit.report.summary.selection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'salience_audit.report' has no attribute {name!r}")
