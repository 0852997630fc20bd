"""An audit folder as one object for notebooks: lazy row queries, the summary table, the report inline.

    >>> audit = AuditResults("audit/")                      # a folder `salience-audit audit` wrote
    >>> audit.summary()                                     # pandas, one row per measure x variant x group x dataset
    >>> rows = audit.rows(measure=sa.measures.entropy.ENTROPY_NORM, dataset="progan")   # lazy: nothing read yet
    >>> rows.to_table(columns=["group", "run", "value"])   # reads only those columns of matching row groups

``rows`` returns a :class:`pyarrow.dataset.Dataset` over the finished result shards with the
filter attached: pyarrow pushes it down into the Parquet scan (row-group statistics and
dictionary pages), and ``to_batches()`` streams the matches, so a query over 10^6+ rows holds
only what it returns - not the whole table as ``pd.read_parquet("audit/results")`` does. DuckDB
queries the same object directly (``duckdb.sql("select ... from rows")``).
"""

from __future__ import annotations

import html
import json
from functools import reduce
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as ds

from salience_audit.errors import InputError
from salience_audit.results.store import ResultStore

__all__ = ["AuditResults"]

REPORT_FRAME_HEIGHT = 640
"""Pixels of the report shown inline (its first screen; the frame scrolls for the rest)."""


class AuditResults:
    """The results of one audit folder (``audit.json``, ``results/*.parquet``, ``summary.json``, ``report/``).

    Attributes:
        out_dir: the audit folder.
        meta: ``audit.json`` (groups, runs, datasets, measures, settings).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        meta_path = self.out_dir / "audit.json"
        if not meta_path.is_file():
            raise InputError("not an audit folder (no audit.json inside)", self.out_dir)
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read audit metadata: {err}", meta_path) from err

    # ------------------------------------------------------------------ files
    @property
    def report_path(self) -> Path | None:
        """``report/index.html`` when the report was written, else None."""
        path = self.out_dir / "report" / "index.html"
        return path if path.is_file() else None

    @property
    def summary_path(self) -> Path:
        return self.out_dir / "summary.json"

    # ------------------------------------------------------------------ rows
    def rows(self, filters: ds.Expression | None = None, **where: Any) -> ds.Dataset:
        """The per-sample rows matching ``filters`` and ``where``, lazily (a pyarrow Dataset).

        Args:
            filters: a pyarrow expression, e.g. ``pc.field("value") > 0.5`` (``import pyarrow.compute as pc``).
            where: column = value (equality) or column = list/tuple/set of values (membership),
                e.g. ``measure=ENTROPY_NORM, group=["xent", "cyborg"]`` (names in :mod:`salience_audit.measures`); combined with AND.

        Nothing is read until the result is consumed (``.to_table(columns=...)``,
        ``.to_batches()``, ``.count_rows()``, ``.head(n)``, or DuckDB).
        """
        files = ResultStore(self.out_dir).shard_files()
        if not files:
            raise InputError("the audit has no finished result shards yet", self.out_dir / "results")
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        unknown = sorted(set(where) - set(dataset.schema.names))
        if unknown:
            raise InputError(f"no column(s) {unknown} in the results; columns: {dataset.schema.names}")
        expression = _and([filters] if filters is not None else [], where)
        return dataset if expression is None else dataset.filter(expression)

    # ------------------------------------------------------------------ summary
    def summary(self) -> pd.DataFrame:
        """The report's statistics as a table: one row per measure x variant x group x dataset.

        Read from ``summary.json`` when it is up to date with the results; otherwise the summary
        is recomputed (shard by shard, in bounded memory) and written first, so the table always
        matches the current rows.
        """
        from salience_audit.report.summary.build import load_fresh_summary, write_summary

        summary = load_fresh_summary(self.out_dir)
        if summary is None:
            write_summary(self.out_dir)
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
        return pd.DataFrame(summary.get("stats") or [])

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        groups = self.meta.get("groups") or {}
        runs = sum(len(v) for v in groups.values())
        return (f"AuditResults({str(self.out_dir)!r}: {len(groups)} group(s), {runs} run(s), "
                f"datasets {sorted(self.meta.get('datasets') or {})}, report {self.report_path or 'not written'})")

    def _repr_html_(self) -> str:
        """Jupyter display: the report's first screen in a frame (self-contained HTML), or a note without one."""
        title = html.escape(repr(self))
        if self.report_path is None:
            return f"<p><code>{title}</code></p><p>No report yet: run <code>salience-audit report " \
                   f"{html.escape(str(self.out_dir))}</code>.</p>"
        page = self.report_path.read_text(encoding="utf-8")
        return (f"<p><code>{title}</code></p>"
                f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{REPORT_FRAME_HEIGHT}px;'
                f'border:1px solid #ccc" sandbox="allow-scripts"></iframe>')


def _and(expressions: list[ds.Expression], where: dict[str, Any]) -> ds.Expression | None:
    """AND of the given expressions and one equality / membership test per ``where`` item."""
    parts = list(expressions)
    for column, value in where.items():
        field = ds.field(column)
        if isinstance(value, (list, tuple, set, frozenset)):
            parts.append(field.isin(list(value)))
        else:
            parts.append(field == value)
    return reduce(lambda a, b: a & b, parts) if parts else None
