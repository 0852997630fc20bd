"""The per-sample rows of an audit: one row per image x run (or run pair) x measure variant."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ROW_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("path", pa.string()),
        ("index", pa.int64()),
        ("label", pa.int64()),
        ("group", pa.string()),
        ("run", pa.string()),
        ("measure", pa.string()),
        ("variant", pa.string()),
        ("value", pa.float64()),
    ]
)
"""Columns of the per-sample rows (long format: one row per image x model x measure variant)."""

ROW_COLUMNS: list[str] = list(ROW_SCHEMA.names)
"""Column names of :data:`ROW_SCHEMA`, in order."""

STRING_COLUMNS: tuple[str, ...] = tuple(f.name for f in ROW_SCHEMA if f.type == pa.string())
"""The text columns of :data:`ROW_SCHEMA`."""


class RowBuffer:
    """Collects per-sample rows column-wise for one shard (bounded by the shard size)."""

    def __init__(self) -> None:
        self._columns: dict[str, list[np.ndarray]] = {name: [] for name in ROW_SCHEMA.names}

    def add(
        self,
        *,
        dataset: str,
        paths: list[str],
        indices: np.ndarray,
        labels: np.ndarray,
        group: str,
        run: str,
        measure: str,
        variant: str,
        values: np.ndarray,
    ) -> None:
        """Append one row per image for a (run, measure, variant)."""
        n = len(paths)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"{measure}/{variant}: {values.shape[0]} values for {n} images")
        cols = self._columns
        cols["dataset"].append(np.full(n, dataset, dtype=object))
        cols["path"].append(np.asarray(paths, dtype=object))
        cols["index"].append(np.asarray(indices, dtype=np.int64))
        cols["label"].append(np.asarray(labels, dtype=np.int64))
        cols["group"].append(np.full(n, group, dtype=object))
        cols["run"].append(np.full(n, run, dtype=object))
        cols["measure"].append(np.full(n, measure, dtype=object))
        cols["variant"].append(np.full(n, variant, dtype=object))
        cols["value"].append(values)

    def __len__(self) -> int:
        return int(sum(len(a) for a in self._columns["value"]))

    def to_table(self) -> pa.Table:
        """The collected rows as an Arrow table with :data:`ROW_SCHEMA`."""
        arrays = []
        for field in ROW_SCHEMA:
            parts = self._columns[field.name]
            data = np.concatenate(parts) if parts else np.array([], dtype=object)
            arrays.append(pa.array(data, type=field.type))
        return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)
