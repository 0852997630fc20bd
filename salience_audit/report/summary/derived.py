"""Per-image, per-run values derived from the raw per-sample rows by the measures themselves.

Each registered measure may derive rows from an audit's rows
(:meth:`salience_audit.measures.base.Measure.derive`): the transforms measure adds variant
``all`` (the mean over the non-identity transformations of each image), the degradation
measure adds ``degrade_accuracy_change``, ``degrade_true_score_drop`` and
``degrade_faithfulness``. All derived rows keep the row schema, so they are aggregated
exactly like measured rows.
"""

from __future__ import annotations

import pandas as pd

from salience_audit.measures import registry
from salience_audit.results.schema import CORE_COLUMNS as ROW_COLUMNS


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in ROW_COLUMNS})


def derive_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """All derived rows of every registered measure, in registry order (same columns as the input rows)."""
    parts = [p[ROW_COLUMNS] for m in registry.registered() for p in m.derive(rows) if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True)
