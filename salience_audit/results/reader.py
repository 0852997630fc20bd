"""Read an audit output folder: per-sample rows, ``audit.json``, gallery and mean maps.

Layout (written by the audit pipeline)::

    OUT/results/*.parquet   long-format per-sample rows (see :data:`salience_audit.results.schema.ROW_SCHEMA`)
    OUT/audit.json          what was audited (groups, runs, datasets, settings)
    OUT/gallery.npz         optional example images with their maps
    OUT/mean_maps.npz       optional "<run>::<dataset>" -> mean map
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salience_audit.errors import InputError
from salience_audit.progress import progress_bar
from salience_audit.results.fingerprint import AUDIT_ID_KEY, FINGERPRINT_KEY, read_stamp
from salience_audit.results.schema import CORE_COLUMNS, CORE_STRING_COLUMNS, PAIR_SEPARATOR
from salience_audit.results.store import ResultStore


def _empty_rows() -> pd.DataFrame:
    data: dict[str, pd.Series] = {c: pd.Series(dtype="object") for c in CORE_STRING_COLUMNS}
    data["index"] = pd.Series(dtype="int64")
    data["label"] = pd.Series(dtype="int64")
    data["value"] = pd.Series(dtype="float64")
    return pd.DataFrame(data)[CORE_COLUMNS]


def pair_keys(rows: pd.DataFrame) -> pd.Series:
    """The ``run`` column with each pair row's ``run_a`` / ``run_b`` joined as ``"a|b"`` (row layout 2 -> core)."""
    run = rows["run"]
    if "run_a" not in rows.columns or "run_b" not in rows.columns:
        return run
    pair = rows["run_a"].notna() & rows["run_b"].notna() & (run.isna() | (run.astype(str) == ""))
    if not pair.any():
        return run
    run = run.astype(object).copy()
    run[pair] = rows.loc[pair, "run_a"].astype(str) + PAIR_SEPARATOR + rows.loc[pair, "run_b"].astype(str)
    return run


def normalize_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with the core columns and types (variant "" when missing, label -1 when missing).

    Row layout 2 (``run_a`` / ``run_b`` columns) and layout 1 (pairs packed in ``run``) give
    the same rows: a pair row's ``run`` is the key ``"<run_a>|<run_b>"``. The typed variant
    columns are dropped (the summary works on the variant label).
    """
    if "run" not in rows.columns and {"run_a", "run_b"} <= set(rows.columns):
        rows = rows.assign(run=None)
    missing = [c for c in CORE_COLUMNS if c not in rows.columns and c not in ("variant", "label", "path")]
    if missing:
        raise InputError(f"result rows lack the column(s) {missing}; expected {CORE_COLUMNS}")
    out = rows.copy()
    out["run"] = pair_keys(out)
    if "variant" not in out.columns:
        out["variant"] = ""
    if "path" not in out.columns:
        out["path"] = ""
    if "label" not in out.columns:
        out["label"] = -1
    for col in CORE_STRING_COLUMNS:
        out[col] = out[col].fillna("").astype(str)
    out["index"] = pd.to_numeric(out["index"], errors="coerce").fillna(-1).astype("int64")
    out["label"] = pd.to_numeric(out["label"], errors="coerce").fillna(-1).astype("int64")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    return out[CORE_COLUMNS].reset_index(drop=True)


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """All per-sample rows of ``OUT/results/*.parquet`` as one DataFrame.

    Hidden / temporary files are ignored; an audit without result files gives an empty
    frame with the row columns.
    """
    files = result_files(out_dir)
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


# ----------------------------------------------------------------------------- reading in bounded chunks

CHUNK_ROWS = 1 << 19
"""Rows converted to pandas at once (a chunk grows beyond it only to keep an image whole)."""

_READ_COLUMNS = [c for c in CORE_COLUMNS if c != "path"] + ["run_a", "run_b"]


def result_files(out_dir: str | Path) -> list[Path]:
    """The result shards of the audit in ``out_dir``, checked against its ``audit.json``; sorted.

    When ``audit.json`` lists the audit's shards (an ``audit_id`` and ``shards``, written
    since fingerprints exist), every ``OUT/results/*.parquet`` must be one of them and carry
    the audit id and fingerprint listed there: a file that is not (a shard of another audit,
    a stale or hand-made file) raises :class:`InputError` naming it, and is never merged.
    Listed shards without a file give a loud warning, ``incomplete: 40 of 60 images``.
    Folders without that list (older versions, hand-made folders) are read as they are.
    """
    files = ResultStore(out_dir).shard_files()
    meta = load_audit_meta(out_dir)
    listed = meta.get("shards")
    audit_id = meta.get("audit_id")
    if not isinstance(listed, dict) or not isinstance(audit_id, str):
        return files
    for path in files:
        _check_shard(path, listed.get(path.stem), audit_id)
    coverage = shard_coverage(out_dir)
    if coverage is not None and coverage["missing"]:
        missing = coverage["missing"]
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        warnings.warn(
            f"incomplete: {Path(out_dir) / 'results'} holds {coverage['images']} of {coverage['of']} images (image x "
            f"group slots); {len(missing)} shard file(s) missing ({shown}). Run the audit command again to compute them; "
            "until then the numbers cover only the images present",
            stacklevel=1,  # one place: said once per command even when several readers list the files
        )
    return files


def shard_coverage(out_dir: str | Path) -> dict[str, Any] | None:
    """``{"images": present, "of": listed, "missing": [shard ids]}`` of the shards ``audit.json`` lists.

    Images count image x group slots (an image audited by two groups counts twice). None
    when ``audit.json`` lists no shards (older versions, hand-made folders).
    """
    listed = load_audit_meta(out_dir).get("shards")
    if not isinstance(listed, dict):
        return None
    present = {p.stem for p in ResultStore(out_dir).shard_files()}
    size = {sid: int(v.get("images", 0)) if isinstance(v, dict) else 0 for sid, v in listed.items()}
    missing = [sid for sid in listed if sid not in present]
    total = sum(size.values())
    return {"images": total - sum(size[sid] for sid in missing), "of": total, "missing": missing}


def _check_shard(path: Path, entry: Any, audit_id: str) -> None:
    """Refuse a shard file that is not the one ``audit.json`` lists under its name."""
    stamp = read_stamp(path)
    if stamp is None:
        raise InputError("cannot read result shard (not a Parquet file?)", path)
    if not isinstance(entry, dict):
        raise InputError(
            "this result shard is not part of the audit (audit.json does not list it); it may come from another "
            "audit - move it out of results/ (it is not read)",
            path,
        )
    if stamp.get(AUDIT_ID_KEY) != audit_id:
        raise InputError(
            f"this result shard belongs to another audit (audit id {stamp.get(AUDIT_ID_KEY) or 'none'}, this "
            f"audit's is {audit_id}); move it out of results/ (it is not read)",
            path,
        )
    if stamp.get(FINGERPRINT_KEY) != entry.get("fingerprint"):
        raise InputError(
            "this result shard was computed from other inputs or settings than audit.json records; run the audit "
            "command again to recompute it",
            path,
        )


def _read_error(path: Path, err: Exception) -> InputError:
    return InputError(f"cannot read result shard: {err}", path)


def read_shard(path: Path, filters: Any = None, decode: bool = False) -> pa.Table:
    """One shard's rows without the ``path`` column; string columns dictionary-encoded unless ``decode``."""
    try:
        schema = pq.read_schema(path)
        columns = [c for c in _READ_COLUMNS if c in schema.names]
        strings = [c for c in columns if c in CORE_STRING_COLUMNS or c in ("run_a", "run_b")]
        table = pq.read_table(path, columns=columns, filters=filters, read_dictionary=None if decode else strings)
    except (OSError, pa.ArrowException) as err:
        raise _read_error(path, err) from err
    if decode:
        for i, fld in enumerate(table.schema):
            if pa.types.is_dictionary(fld.type):
                table = table.set_column(i, fld.name, table.column(i).cast(fld.type.value_type))
    return table


def _extent(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(group, dataset): (first index, last index)}`` of a shard, from the Parquet statistics when they suffice."""
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException) as err:
        raise _read_error(path, err) from err
    if meta.num_rows == 0:
        return {}
    names = meta.schema.to_arrow_schema().names
    if not {"group", "dataset", "index"} <= set(names):
        return {}
    cols = {name: names.index(name) for name in ("group", "dataset", "index")}
    found: dict[str, list[Any]] = {"group": [], "dataset": [], "index": []}
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        for name, i in cols.items():
            st = group.column(i).statistics
            if st is None or not st.has_min_max or st.null_count:
                found = {}
                break
            found[name] += [st.min, st.max]
        if not found:
            break
    if found and len(set(found["group"])) == 1 and len(set(found["dataset"])) == 1:
        return {(str(found["group"][0]), str(found["dataset"][0])): (int(min(found["index"])), int(max(found["index"])))}
    try:
        frame = pq.read_table(path, columns=["group", "dataset", "index"]).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise _read_error(path, err) from err
    frame["index"] = pd.to_numeric(frame["index"], errors="coerce").fillna(-1)
    ext = frame.groupby(["group", "dataset"], observed=True, dropna=False)["index"].agg(["min", "max"])
    return {(str(g), str(d)): (int(lo), int(hi)) for (g, d), lo, hi in zip(ext.index, ext["min"], ext["max"])}


def plan_units(files: Sequence[Path]) -> list[list[Path]]:
    """Consecutive runs of ``files`` to read together: files sharing images of a group are in one unit.

    Two files overlap when they hold rows of the same (group, dataset) with intersecting
    index ranges. The audit's own shards never overlap (one file per unit); other layouts
    (rows of an image split over files) are merged, keeping the file order, so every
    per-image value is computed from all of the image's rows.
    """
    if not files:
        return []
    parent = list(range(len(files)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_key: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for i, path in enumerate(files):
        for key, (lo, hi) in _extent(path).items():
            by_key.setdefault(key, []).append((lo, hi, i))
    for items in by_key.values():
        items.sort()
        reach, owner = None, None
        for lo, hi, i in items:
            if reach is not None and lo <= reach:
                parent[root(i)] = root(owner)
            if reach is None or hi > reach:
                reach, owner = hi, i
    span: dict[int, list[int]] = {}
    for i in range(len(files)):
        r = root(i)
        span.setdefault(r, [i, i])
        span[r][0], span[r][1] = min(span[r][0], i), max(span[r][1], i)
    units: list[list[int]] = []
    for lo, hi in sorted(span.values()):
        if units and lo <= units[-1][1]:
            units[-1][1] = max(units[-1][1], hi)
        else:
            units.append([lo, hi])
    return [list(files[lo : hi + 1]) for lo, hi in units]


def chunk_bounds(table: pa.Table, chunk_rows: int) -> list[int]:
    """Row positions ``[0, ..., n]`` cutting ``table`` into chunks of about ``chunk_rows`` rows.

    A cut is only placed where no (group, dataset, image) has rows on both sides, so each
    chunk holds all rows of the images it touches (the shards are written batch by batch,
    which leaves a cut after every batch). Without such a cut the table is one chunk.
    """
    n = table.num_rows
    if n <= chunk_rows:
        return [0, n]
    frame = table.select(["group", "dataset", "index"]).to_pandas()
    codes = [pd.factorize(frame[c], use_na_sentinel=False)[0] for c in ("group", "dataset", "index")]
    ids = pd.DataFrame({"g": codes[0], "d": codes[1], "i": codes[2]}).groupby(["g", "d", "i"], sort=False).ngroup()
    ids = ids.to_numpy()
    pos = np.arange(n, dtype=np.int64)
    first = np.full(int(ids.max()) + 1, n, dtype=np.int64)
    last = np.full(first.size, -1, dtype=np.int64)
    np.minimum.at(first, ids, pos)
    np.maximum.at(last, ids, pos)
    started = np.cumsum(np.bincount(first, minlength=n + 1))
    ended = np.cumsum(np.bincount(last + 1, minlength=n + 1))
    p = np.arange(1, n)
    cuts = p[started[p - 1] - ended[p] == 0]  # no image with first < p <= last
    bounds, start = [0], 0
    while start < n:
        target = start + chunk_rows
        if target >= n:
            stop = n
        else:
            j = int(np.searchsorted(cuts, target, side="right"))
            if j > 0 and cuts[j - 1] > start:
                stop = int(cuts[j - 1])
            else:
                stop = int(cuts[j]) if j < cuts.size else n
        bounds.append(stop)
        start = stop
    return bounds


def table_rows(table: pa.Table) -> pd.DataFrame:
    """Arrow rows as normalised pandas rows (:func:`~salience_audit.results.reader.normalize_rows`)."""
    frame = table.to_pandas()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    return normalize_rows(frame)


def iter_result_chunks(
    out_dir: str | Path, measures: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Normalised rows of ``OUT/results``, a bounded chunk at a time, every image of a group whole in one chunk.

    Chunks come in file order and, within a file, in row order, so concatenating them gives
    :func:`~salience_audit.results.reader.load_results` (without the ``path`` column).
    ``measures`` keeps only those measures' rows (a pyarrow filter).
    """
    filters = [("measure", "in", list(measures))] if measures else None
    files = result_files(out_dir)
    bar = progress_bar(total=len(files), desc="reading results", unit="shard", leave=False)  # closed when done/dropped
    for unit in plan_units(files):
        bar.update(len(unit))
        if len(unit) == 1:
            table = read_shard(unit[0], filters)
        else:
            table = pa.concat_tables([read_shard(p, filters, decode=True) for p in unit], promote_options="default")
        if not {"group", "dataset", "index"} <= set(table.schema.names):
            yield table_rows(table)  # normalize_rows names the missing columns
            continue
        bounds = chunk_bounds(table, chunk_rows)
        for a, b in itertools.pairwise(bounds):
            yield table_rows(table.slice(a, b - a))
        del table
    bar.close()
