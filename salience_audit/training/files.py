"""The files of a training run folder, all written atomically (temporary file + ``os.replace``).

A run folder holds:

- ``run.json``: metadata (architecture, normalisation, CAM layer, config, data hash,
  best epoch, ``finished``), what :func:`salience_audit.models.audit_model.load_run` reads;
- ``model.pt``: state dict of the inner classifier at the best validation accuracy
  (``torch.load(..., weights_only=True)``);
- ``log.csv`` / ``log.json``: one row per epoch;
- ``checkpoint-last.pt``: resume state of an unfinished run (removed when it finishes).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from salience_audit.atomic import atomic_write, atomic_write_text
from salience_audit.models.audit_model import MODEL_FILE, RUN_FILE

__all__ = [
    "LAST_CHECKPOINT",
    "LOG_COLUMNS",
    "LOG_CSV",
    "LOG_JSON",
    "MODEL_FILE",
    "RUN_FILE",
    "atomic_torch_save",
    "atomic_write_text",
    "read_run_info",
    "write_log",
    "write_run_info",
]

LOG_CSV = "log.csv"
LOG_JSON = "log.json"
LAST_CHECKPOINT = "checkpoint-last.pt"

#: Columns of the per-epoch log, in order: ``lr`` used in the epoch; sample-weighted training
#: means of the total ``loss``, its cross-entropy ``ce`` and its CAM-vs-human ``mse`` (empty for
#: cross-entropy runs, where it is not computed); ``train_acc`` (on the fly, before the epoch's
#: last update); validation accuracy, cross-entropy (``val_loss``) and ``val_mse`` (mean
#: MSE between the predicted-class CAM and the human map over validation images that have
#: one, computed for both families; empty when none has a map); wall-clock ``seconds``.
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "lr", "loss", "ce", "mse", "train_acc", "val_acc", "val_loss", "val_mse", "seconds",
)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _json_value(value: Any) -> Any:
    """NaN / inf floats become ``null`` so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_log(run_dir: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write the epoch log as ``log.csv`` (missing values empty) and ``log.json`` (null)."""
    run_dir = Path(run_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if _json_value(row.get(k)) is None else row[k]) for k in LOG_COLUMNS})
    atomic_write_text(run_dir / LOG_CSV, buf.getvalue())
    clean = [{k: _json_value(row.get(k)) for k in LOG_COLUMNS} for row in rows]
    atomic_write_text(run_dir / LOG_JSON, json.dumps(clean, indent=1) + "\n")


def write_run_info(run_dir: str | Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    clean = {k: _json_value(v) for k, v in info.items()}
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(clean, indent=2, sort_keys=True) + "\n")


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``run.json`` of a folder as a dict, or None when missing or unreadable."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
