"""The per-sample rows of an audit: one row per image x run (or run pair) x measure variant."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

ROW_SCHEMA_VERSION = 2
"""Version of the row layout, written to ``audit.json`` (``row_schema``). 1: pairs packed as ``run = "a|b"``, no
typed variant columns; 2: ``run_a`` / ``run_b`` and the typed variant columns of :data:`ROW_SCHEMA`."""

ROW_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("path", pa.string()),
        ("index", pa.int64()),
        ("label", pa.int64()),
        ("group", pa.string()),
        ("run", pa.string()),
        ("run_a", pa.string()),
        ("run_b", pa.string()),
        ("measure", pa.string()),
        ("variant", pa.string()),
        ("noise_amount", pa.float64()),
        ("transform", pa.string()),
        ("shift_dx", pa.int64()),
        ("shift_dy", pa.int64()),
        ("value", pa.float64()),
    ]
)
"""Columns of the per-sample rows (long format: one row per image x model x measure variant).

- ``run``: the run of a per-run row; null on a row of a pair of runs (cross-run stability),
  which names its two runs in ``run_a`` and ``run_b`` (null on per-run rows);
- ``variant``: the readable variant label (``a=0.05``, ``shift(+16,-16)``, ``object``, ...),
  and its parameters as typed columns: ``noise_amount`` (the salt-and-pepper amount of an
  ``a=...`` variant), ``transform`` (``identity``, ``flip_lr``, ``flip_tb``, ``shift``,
  ``rot90_cw``, ``rot90_ccw`` for the geometric variants) with ``shift_dx`` / ``shift_dy``
  (pixels, for shifts); null where they do not apply.
"""

ROW_COLUMNS: list[str] = list(ROW_SCHEMA.names)
"""Column names of :data:`ROW_SCHEMA`, in order."""

STRING_COLUMNS: tuple[str, ...] = tuple(f.name for f in ROW_SCHEMA if f.type == pa.string())
"""The text columns of :data:`ROW_SCHEMA`."""

CORE_COLUMNS: list[str] = ["dataset", "path", "index", "label", "group", "run", "measure", "variant", "value"]
"""The columns the summary works on (:func:`salience_audit.results.reader.normalize_rows`); there, a pair row's
``run`` is the pair key ``"<run_a>|<run_b>"`` (and every version-1 row reads the same)."""

CORE_STRING_COLUMNS: tuple[str, ...] = ("dataset", "path", "group", "run", "measure", "variant")
"""The text columns of :data:`CORE_COLUMNS`."""

PAIR_SEPARATOR = "|"
"""Separator of the in-memory pair key ``"<run_a>|<run_b>"``."""

TRANSFORM_NAMES: tuple[str, ...] = ("identity", "flip_lr", "flip_tb", "rot90_cw", "rot90_ccw")
"""Geometric variants without parameters (shifts are ``shift(dx,dy)``)."""

_NOISE = re.compile(r"^a=([-+0-9.eE]+|nan|inf)$")
_SHIFT = re.compile(r"^shift\(([-+]?\d+),\s*([-+]?\d+)\)$")


def variant_parameters(variant: str) -> tuple[float | None, str | None, int | None, int | None]:
    """(noise_amount, transform, shift_dx, shift_dy) of one variant label (None where they do not apply)."""
    found = _NOISE.match(variant)
    if found:
        try:
            return float(found.group(1)), None, None, None
        except ValueError:
            return None, None, None, None
    found = _SHIFT.match(variant)
    if found:
        return None, "shift", int(found.group(1)), int(found.group(2))
    if variant in TRANSFORM_NAMES:
        return None, variant, None, None
    return None, None, None, None


def variant_columns(variants: np.ndarray) -> dict[str, pa.Array]:
    """The typed variant columns of an array of variant labels (parsed once per distinct label)."""
    labels = np.asarray(variants, dtype=object)
    uniq, inverse = np.unique(labels.astype(str), return_inverse=True) if labels.size else (np.array([], dtype=str),
                                                                                            np.array([], dtype=int))
    parsed = [variant_parameters(str(v)) for v in uniq]
    out = {}
    for k, (name, typ) in enumerate((("noise_amount", pa.float64()), ("transform", pa.string()),
                                     ("shift_dx", pa.int64()), ("shift_dy", pa.int64()))):
        per_label = [p[k] for p in parsed]
        out[name] = pa.array([per_label[i] for i in inverse], type=typ) if labels.size else pa.array([], type=typ)
    return out


_TYPED = ("noise_amount", "transform", "shift_dx", "shift_dy")


def rows_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """An Arrow table with :data:`ROW_SCHEMA` from core columns (``run`` holding ``"a|b"`` pair keys, as in
    version 1): pair keys of pairwise rows go to ``run_a`` / ``run_b``, the typed variant columns are parsed.

    For rows written by other tools (and the tests' synthetic shards); ``columns`` holds the
    :data:`CORE_COLUMNS`.
    """
    run = np.asarray(columns["run"], dtype=object)
    is_pair = np.array([PAIR_SEPARATOR in str(r) for r in run], dtype=bool)
    split = [str(r).split(PAIR_SEPARATOR, 1) if p else (None, None) for r, p in zip(run, is_pair)]
    data = dict(columns)
    data["run"] = np.where(is_pair, None, run)
    data["run_a"] = np.array([a for a, _ in split], dtype=object)
    data["run_b"] = np.array([b for _, b in split], dtype=object)
    typed = variant_columns(np.asarray(columns["variant"], dtype=object))
    arrays = [typed[f.name] if f.name in typed else pa.array(data[f.name], type=f.type) for f in ROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)


def schema_description() -> dict[str, object]:
    """The row layout for ``audit.json``: version and ``{column: arrow type}``."""
    return {"version": ROW_SCHEMA_VERSION, "columns": {f.name: str(f.type) for f in ROW_SCHEMA}}


class RowBuffer:
    """Collects per-sample rows column-wise for one shard (bounded by the shard size)."""

    def __init__(self) -> None:
        self._columns: dict[str, list[np.ndarray]] = {name: [] for name in ROW_SCHEMA.names if name not in _TYPED}

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
        run_b: str | None = None,
    ) -> None:
        """Append one row per image for a (run, measure, variant); a pair of runs is ``run`` and ``run_b``."""
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
        if run_b is None:
            cols["run"].append(np.full(n, run, dtype=object))
            cols["run_a"].append(np.full(n, None, dtype=object))
            cols["run_b"].append(np.full(n, None, dtype=object))
        else:
            cols["run"].append(np.full(n, None, dtype=object))
            cols["run_a"].append(np.full(n, run, dtype=object))
            cols["run_b"].append(np.full(n, run_b, dtype=object))
        cols["measure"].append(np.full(n, measure, dtype=object))
        cols["variant"].append(np.full(n, variant, dtype=object))
        cols["value"].append(values)

    def __len__(self) -> int:
        return int(sum(len(a) for a in self._columns["value"]))

    def to_table(self) -> pa.Table:
        """The collected rows as an Arrow table with :data:`ROW_SCHEMA` (typed variant columns parsed here)."""
        data = {name: (np.concatenate(parts) if parts else np.array([], dtype=object))
                for name, parts in self._columns.items()}
        typed = variant_columns(data["variant"])
        arrays = []
        for field in ROW_SCHEMA:
            arrays.append(typed[field.name] if field.name in typed else pa.array(data[field.name], type=field.type))
        return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)
