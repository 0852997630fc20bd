"""Experiment tracking: send training and audit results to MLflow, TensorBoard or Weights & Biases.

``--log-to`` takes ``mlflow[:URI]`` (default: a local ``./mlruns`` file store),
``tensorboard[:DIR]`` (default ``./tb-logs``) or ``wandb[:PROJECT]`` (offline unless
``WANDB_MODE``/``WANDB_API_KEY`` say otherwise); it may be repeated. Each tracker is an extra
(``pip install "salience-audit[mlflow]"`` ...); a missing one is refused before any work starts.

What is logged (see docs/tracking.md):

* ``train``: one tracker run per trained run - its config as parameters, every epoch's
  metrics (step = epoch) sent as the epoch ends, tags ``group``/``arch``/``loss``/``seed``, and
  the run folder as an artifact once the run is done.
* ``audit``: one tracker run per audited run - the mean of every measure on every dataset
  (from ``summary.json``, so the numbers equal the report's), tagged with its group - and one
  run for the whole audit with the group comparisons and the report folder as an artifact.
"""

from salience_audit.tracking.backends import Tracker, TrackerRun, TrackerSpec, open_trackers, parse_log_to
from salience_audit.tracking.events import TrainingLog, log_audit, log_training_runs

__all__ = [
    "Tracker",
    "TrackerRun",
    "TrackerSpec",
    "TrainingLog",
    "log_audit",
    "log_training_runs",
    "open_trackers",
    "parse_log_to",
]
