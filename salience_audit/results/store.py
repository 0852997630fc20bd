"""Sharded, atomic result store: one Parquet file per finished shard.

A shard file is written to a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a file named ``*.parquet`` is always
complete. A resumed audit trusts exactly the shard files that exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salience_audit.atomic import atomic_write
from salience_audit.errors import OutputWriteError
from salience_audit.jsonsafe import json_safe
from salience_audit.results.schema import ROW_SCHEMA, RowBuffer


class StoreWriteError(OutputWriteError):
    """The output folder cannot be written (full disk, permissions)."""


def _atomic_write(path: Path, write: Any) -> None:
    """:func:`salience_audit.atomic.atomic_write`, with OS errors as :class:`StoreWriteError`."""
    try:
        atomic_write(path, write)
    except OSError as err:
        raise StoreWriteError(f"{path}: cannot write result file: {err.strerror or err}") from err


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary file, then rename)."""
    _atomic_write(Path(path), lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON atomically: :func:`salience_audit.jsonsafe.json_safe` of ``obj`` (NaN / infinity -> null)."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write a compressed ``.npz`` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    _atomic_write(Path(path), write)


class ResultStore:
    """The ``results/`` folder of an audit: finished shards are Parquet files.

    Layout: ``results/<shard_id>.parquet`` (only Parquet files, so ``results/`` reads as
    one dataset with pandas / pyarrow) plus ``aggregates/<shard_id>.npz`` (side aggregates
    such as mean-map sums and rejected items of the shard).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.results_dir = self.out_dir / "results"
        self.aggregates_dir = self.out_dir / "aggregates"

    def prepare(self) -> None:
        """Create the folders, failing early with a clear message when not writable."""
        try:
            self.results_dir.mkdir(parents=True, exist_ok=True)
            self.aggregates_dir.mkdir(parents=True, exist_ok=True)
            probe = self.results_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise StoreWriteError(f"{self.results_dir}: output folder is not writable: {err.strerror or err}") from err
        for folder, suffix in ((self.results_dir, "parquet"), (self.aggregates_dir, "npz")):
            # left by an interrupted write of this tool (.<name>.<suffix>.<random>.tmp): never trusted
            for stale in folder.glob(f".*.{suffix}.*.tmp"):
                stale.unlink(missing_ok=True)

    def shard_path(self, shard_id: str) -> Path:
        return self.results_dir / f"{shard_id}.parquet"

    def side_path(self, shard_id: str) -> Path:
        return self.aggregates_dir / f"{shard_id}.npz"

    def is_done(self, shard_id: str) -> bool:
        """A shard is done when its Parquet file exists (it is only ever renamed into place complete)."""
        return self.shard_path(shard_id).exists()

    def verify_done(self, shard_ids: Iterable[str]) -> list[str]:
        """Shards among ``shard_ids`` whose files exist *and* read as Parquet; the others are redone.

        Our writes are atomic, but a shard file can still be cut short by something outside
        the audit (a failed copy or sync of the folder). Reading the footer costs one small
        read per file. An unreadable file is moved aside to a hidden ``.<name>.corrupt`` (never
        read as a result) and its shard is reported as not done.
        """
        done: list[str] = []
        for shard_id in shard_ids:
            path = self.shard_path(shard_id)
            if not path.exists():
                continue
            try:
                meta = pq.read_metadata(path)
                ok = meta.schema.to_arrow_schema().names == ROW_SCHEMA.names
            except (OSError, pa.ArrowException):
                ok = False
            if ok:
                done.append(shard_id)
            else:
                os.replace(path, path.with_name(f".{path.name}.corrupt"))
        return done

    def write_shard(
        self,
        shard_id: str,
        rows: RowBuffer,
        side: dict[str, np.ndarray] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Write the side aggregates, then the rows (the rows file marks the shard done).

        ``metadata`` goes into the Parquet file's key-value metadata (the shard's fingerprint
        and audit id, see :mod:`salience_audit.results.fingerprint`).
        """
        if side:
            atomic_save_npz(self.side_path(shard_id), **side)
        elif self.side_path(shard_id).exists():  # a recomputed shard must not keep a stale side file
            self.side_path(shard_id).unlink()
        table = rows.to_table()
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        _atomic_write(self.shard_path(shard_id), lambda tmp: pq.write_table(table, tmp))

    def shard_files(self) -> list[Path]:
        """The finished shards' Parquet files, sorted by shard id (temporary files excluded)."""
        return sorted(p for p in self.results_dir.glob("*.parquet") if not p.name.startswith("."))

    def done_shards(self) -> list[str]:
        return [p.stem for p in self.shard_files()]

    def read_rows(self, columns: Iterable[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """All rows of the finished shards (optionally a subset of columns / a pyarrow filter)."""
        files = self.shard_files()
        if not files:
            return pd.DataFrame({name: pd.Series(dtype="object") for name in ROW_SCHEMA.names})
        table = pq.read_table(
            [str(f) for f in files], columns=list(columns) if columns else None, filters=filters, schema=ROW_SCHEMA
        )
        return table.to_pandas()

    def read_side(self) -> dict[str, dict[str, np.ndarray]]:
        """Side aggregates of every finished shard, keyed by shard id."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for shard_id in self.done_shards():
            path = self.side_path(shard_id)
            if path.exists():
                with np.load(path, allow_pickle=False) as data:
                    out[shard_id] = {k: data[k] for k in data.files}
        return out
