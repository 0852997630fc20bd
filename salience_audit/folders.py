"""Names of the files that mark a folder as an audit folder written by this tool.

They live at the bottom of the package because the lowest layer needs them too: a
class-per-folder dataset skips any sub-folder holding :data:`AUDIT_MARKER` (an audit
written inside a dataset must not have its report figures read as images).
"""

from __future__ import annotations

AUDIT_MARKER = ".salience-audit"
"""JSON file in every audit output folder: ``{"tool", "version", "audit_id", "created"}``."""

AUDIT_LOCK = ".salience-audit.lock"
"""The exclusive lock of an audit folder (held by the one ``audit`` / ``report`` writing it)."""

AUDIT_LOCK_OWNER = ".salience-audit.owner"
"""JSON file naming the process holding :data:`AUDIT_LOCK` (PID, host, start time, command)."""
