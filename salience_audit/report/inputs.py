"""Read an audit output folder: per-sample rows, ``audit.json``, gallery and mean maps.

Layout (written by the audit pipeline)::

    OUT/results/*.parquet   long-format per-sample rows (see derived.ROW_COLUMNS)
    OUT/audit.json          what was audited (groups, runs, datasets, settings)
    OUT/gallery.npz         optional example images with their maps
    OUT/mean_maps.npz       optional "<run>::<dataset>" -> mean map
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salience_audit.audit.store import ResultStore
from salience_audit.errors import InputError
from salience_audit.report.derived import ROW_COLUMNS

_STRING_COLUMNS = ("dataset", "path", "group", "run", "measure", "variant")


def _empty_rows() -> pd.DataFrame:
    data: dict[str, pd.Series] = {c: pd.Series(dtype="object") for c in _STRING_COLUMNS}
    data["index"] = pd.Series(dtype="int64")
    data["label"] = pd.Series(dtype="int64")
    data["value"] = pd.Series(dtype="float64")
    return pd.DataFrame(data)[ROW_COLUMNS]


def normalize_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with the expected columns and types (variant "" when missing, label -1 when missing)."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns and c not in ("variant", "label", "path")]
    if missing:
        raise InputError(f"result rows lack the column(s) {missing}; expected {ROW_COLUMNS}")
    out = rows.copy()
    if "variant" not in out.columns:
        out["variant"] = ""
    if "path" not in out.columns:
        out["path"] = ""
    if "label" not in out.columns:
        out["label"] = -1
    for col in _STRING_COLUMNS:
        out[col] = out[col].fillna("").astype(str)
    out["index"] = pd.to_numeric(out["index"], errors="coerce").fillna(-1).astype("int64")
    out["label"] = pd.to_numeric(out["label"], errors="coerce").fillna(-1).astype("int64")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    return out[ROW_COLUMNS].reset_index(drop=True)


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """All per-sample rows of ``OUT/results/*.parquet`` as one DataFrame.

    Hidden / temporary files are ignored; an audit without result files gives an empty
    frame with the row columns.
    """
    files = ResultStore(out_dir).shard_files()
    if not files:
        return _empty_rows()
    tables = []
    for path in files:
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"cannot read result shard: {err}", path) from err
    table = pa.concat_tables(tables, promote_options="default")
    return normalize_rows(table.to_pandas())


def load_audit_meta(out_dir: str | Path) -> dict[str, Any]:
    """``OUT/audit.json`` as a dict ({} when absent)."""
    path = Path(out_dir) / "audit.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read audit metadata: {err}", path) from err
    if not isinstance(meta, dict):
        raise InputError("audit metadata must be a JSON object", path)
    return meta


def load_npz(path: str | Path) -> dict[str, np.ndarray] | None:
    """All arrays of an ``.npz`` file, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path.name}: {err}", path) from err


def load_gallery(out_dir: str | Path) -> dict[str, np.ndarray] | None:
    """``OUT/gallery.npz`` (None when absent)."""
    return load_npz(Path(out_dir) / "gallery.npz")


def load_mean_maps(out_dir: str | Path) -> dict[str, np.ndarray] | None:
    """``OUT/mean_maps.npz`` as ``{"<run>::<dataset>": map [h, w]}`` (None when absent)."""
    return load_npz(Path(out_dir) / "mean_maps.npz")
