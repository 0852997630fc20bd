"""The three tracker backends behind one small interface: start a run, log params/metrics/artifacts, close.

Each backend wraps its library's own client (``mlflow.MlflowClient``,
``torch.utils.tensorboard.SummaryWriter``, ``wandb.init``); nothing here re-implements a store.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from salience_audit.errors import InputError, SalienceAuditError, require_extra

__all__ = ["KINDS", "Tracker", "TrackerRun", "TrackerSpec", "checked_log_to", "open_trackers", "parse_log_to"]

KINDS = ("mlflow", "tensorboard", "wandb")
EXPERIMENT = "salience-audit"
"""MLflow experiment / W&B project used unless one is given (``MLFLOW_EXPERIMENT_NAME`` is honoured)."""


@dataclass(frozen=True)
class TrackerSpec:
    """One ``--log-to`` value: the tracker kind and its target (URI, folder or project; None = default)."""

    kind: str
    target: str | None = None


def parse_log_to(text: str, error: type[Exception] = argparse.ArgumentTypeError) -> TrackerSpec:
    """``mlflow``, ``mlflow:file:///x/mlruns``, ``tensorboard:runs/tb``, ``wandb:my-project`` -> spec.

    An unknown tracker raises ``error`` (argparse's type error by default: a usage error).
    """
    kind, _, target = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise error(f"unknown tracker {text!r}; use mlflow[:URI], tensorboard[:DIR] or wandb[:PROJECT]")
    return TrackerSpec(kind, target.strip() or None)


def checked_log_to(text: str) -> str:
    """argparse type of ``--log-to``: the text itself once :func:`parse_log_to` accepts it."""
    parse_log_to(text)
    return text


class TrackerRun(Protocol):
    """One run in a tracker."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifacts(self, folder: Path, name: str) -> None: ...
    def close(self) -> None: ...


class Tracker(Protocol):
    """A tracker that opens runs named ``name``, grouped by ``group``, with string ``tags``."""

    kind: str

    def start_run(self, name: str, group: str, tags: Mapping[str, str]) -> TrackerRun: ...


def _flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameters as strings (nested values as JSON), the form every tracker accepts."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for k, v in params.items()}


# ---------------------------------------------------------------------------- MLflow
_MLFLOW_KEY = re.compile(r"[^0-9A-Za-z_\-. /]")


def _mlflow_key(key: str) -> str:
    """MLflow accepts letters, digits, ``_ - . /`` and spaces in names; anything else becomes ``_``."""
    return _MLFLOW_KEY.sub("_", key)


class MlflowTracker:
    """Runs in an MLflow tracking store (default: the file store ``./mlruns``), experiment ``salience-audit``."""

    kind = "mlflow"

    def __init__(self, uri: str | None = None) -> None:
        require_extra("mlflow", "mlflow", "--log-to mlflow")
        from mlflow.tracking import MlflowClient

        self.uri = uri or Path("mlruns").resolve().as_uri()
        if "://" not in self.uri:  # a plain folder: the file store there
            self.uri = Path(self.uri).resolve().as_uri()
        if self.uri.startswith("file:"):
            # MLflow >= 3.x keeps its file store in maintenance mode and refuses it unless allowed; a
            # file store is what --log-to mlflow[:file://...] asks for, so allow it for this process.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)

    def start_run(self, name: str, group: str, tags: Mapping[str, str]) -> _MlflowRun:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"group": group, **tags})
        return _MlflowRun(self.client, run.info.run_id)


class _MlflowRun:
    _BATCH = 1000  # MLflow's log_batch limit on metrics per call

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(_mlflow_key(k), v[:6000]) for k, v in _flat_params(params).items()]
        for i in range(0, len(items), 100):  # 100 params per call
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_mlflow_key(k), float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), self._BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + self._BATCH])

    def log_artifacts(self, folder: Path, name: str) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path=name)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


# ---------------------------------------------------------------------------- TensorBoard
class TensorBoardTracker:
    """Event files under ``DIR/<kind>/<group>/<run>`` (default ``./tb-logs``; kind = train, audit ...).

    TensorBoard's run list then groups runs by family (filter with a regex such as ``audit/xent``).

    TensorBoard stores no files: an artifact is recorded as a text entry with its absolute path.
    """

    kind = "tensorboard"

    def __init__(self, folder: str | None = None) -> None:
        require_extra("tensorboard", "tensorboard", "--log-to tensorboard")
        self.folder = Path(folder or "tb-logs")

    def start_run(self, name: str, group: str, tags: Mapping[str, str]) -> _TensorBoardRun:
        from torch.utils.tensorboard import SummaryWriter

        kind = tags.get("kind", "run")
        writer = SummaryWriter(log_dir=str(self.folder / _path_part(kind) / _path_part(group) / _path_part(name)))
        writer.add_text("tags", _markdown_table({"group": group, **tags}), 0)
        return _TensorBoardRun(writer)


def _path_part(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.\-]", "_", text) or "_"


def _markdown_table(values: Mapping[str, str]) -> str:
    return "\n".join(["| key | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in values.items())])


class _TensorBoardRun:
    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.writer.add_text("params", _markdown_table(_flat_params(params)), 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, float(value), step or 0)

    def log_artifacts(self, folder: Path, name: str) -> None:
        self.writer.add_text(f"artifacts/{name}", str(Path(folder).resolve()), 0)

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------- Weights & Biases
WANDB_TAG_LIMIT = 64
"""Longest tag W&B accepts, in characters."""

class WandbTracker:
    """W&B runs in project ``salience-audit`` (or the one given), offline unless W&B is configured.

    Offline: ``WANDB_MODE`` unset and no ``WANDB_API_KEY`` -> ``mode="offline"`` (sync later with
    ``wandb sync``); grouped by ``group`` so the UI's grouping compares model families.
    """

    kind = "wandb"

    def __init__(self, project: str | None = None) -> None:
        self.wandb = require_extra("wandb", "wandb", "--log-to wandb")
        self.project = project or EXPERIMENT
        self.mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")

    def start_run(self, name: str, group: str, tags: Mapping[str, str]) -> _WandbRun:
        # W&B refuses tags longer than 64 characters (e.g. an audit's folder path): those are
        # in the run's config only, where every tag is kept whole.
        short = [tag for tag in (f"{k}={v}" for k, v in tags.items()) if len(tag) <= WANDB_TAG_LIMIT]
        run = self.wandb.init(project=self.project, name=name, group=group, mode=self.mode, tags=short[:64],
                              config={"group": group, **tags})
        return _WandbRun(self.wandb, run)


class _WandbRun:
    def __init__(self, wandb: Any, run: Any) -> None:
        self.wandb = wandb
        self.run = run

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifacts(self, folder: Path, name: str) -> None:
        artifact = self.wandb.Artifact(_path_part(f"{self.run.name}-{name}"), type=name)
        artifact.add_dir(str(folder))
        self.run.log_artifact(artifact)

    def close(self) -> None:
        self.run.finish()


_BACKENDS = {"mlflow": MlflowTracker, "tensorboard": TensorBoardTracker, "wandb": WandbTracker}


def open_trackers(specs: Sequence[TrackerSpec | str] | None) -> list[Tracker]:
    """One tracker per spec (or ``--log-to`` text); a missing extra or an unusable store raises before any work."""
    trackers = []
    for spec in specs or []:
        spec = parse_log_to(spec, error=InputError) if isinstance(spec, str) else spec
        try:
            trackers.append(_BACKENDS[spec.kind](spec.target))
        except SalienceAuditError:
            raise
        except Exception as err:  # noqa: BLE001 - the tracker library's own error, shown as one line
            where = f" at {spec.target}" if spec.target else ""
            raise InputError(f"--log-to {spec.kind}{where}: cannot open the tracker: {err}") from err
    return trackers
