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
import glob
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from salience_audit.atomic import atomic_write, atomic_write_text
from salience_audit.errors import InputError
from salience_audit.jsonsafe import json_safe
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


def write_log(run_dir: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write the epoch log as ``log.csv`` (missing values empty) and ``log.json`` (null)."""
    run_dir = Path(run_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if json_safe(row.get(k)) is None else row[k]) for k in LOG_COLUMNS})
    atomic_write_text(run_dir / LOG_CSV, buf.getvalue())
    clean = [{k: json_safe(row.get(k)) for k in LOG_COLUMNS} for row in rows]
    atomic_write_text(run_dir / LOG_JSON, json.dumps(clean, indent=1) + "\n")


def write_run_info(run_dir: str | Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    clean = {k: json_safe(v) for k, v in info.items()}
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(clean, indent=2, sort_keys=True) + "\n")


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``run.json`` of a folder as a dict, or None when missing or unreadable."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _runs_under(path: Path) -> list[Path]:
    if (path / RUN_FILE).is_file():
        return [path]
    if path.is_file() and path.name == RUN_FILE:
        return [path.parent]
    if path.is_dir():
        return [p.parent for p in path.glob(f"*/{RUN_FILE}")]
    return []


def find_runs(pattern: str | Path, finished_only: bool = True) -> list[Path]:
    """Run folders matching a glob ``pattern``, sorted by path.

    A match may be a run folder (holding ``run.json``), a ``run.json`` file, or a folder
    whose sub-folders are runs (``runs/`` finds every run in it). Unfinished runs are left
    out (with a warning) when ``finished_only``. Raises ``InputError`` when nothing matches.
    """
    text = str(pattern)
    matches = [Path(p) for p in glob.glob(text)] if glob.has_magic(text) else [Path(text)]
    found = sorted({run for m in matches for run in _runs_under(m)})
    if finished_only:
        unfinished = [r for r in found if not (read_run_info(r) or {}).get("finished")]
        if unfinished:
            warnings.warn(f"skipping {len(unfinished)} unfinished run(s): "
                          f"{', '.join(str(r) for r in unfinished[:5])}", stacklevel=2)
        found = [r for r in found if r not in unfinished]
    if not found:
        raise InputError(f"no {'finished ' if finished_only else ''}training run matches {text!r} "
                         f"(a run folder holds {RUN_FILE}; try 'runs/*' or 'runs/densenet121-cyborg-*')")
    return found
