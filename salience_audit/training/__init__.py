"""Training the two model families: cross-entropy and human-salience-guided (CYBORG) runs.

- :func:`guided_loss` - alpha * CE + (1 - alpha) * MSE(CAM of the predicted class, human map);
- :class:`TrainConfig` - the recipe (defaults: the original study's);
- :func:`train_run` - one seeded, logged, resumable run folder;
- :func:`train_group` / :func:`find_runs` - N independent runs, and finding run folders;
- :func:`score_samples` / :func:`detection_table` - P(Synthetic) per image and detection metrics.
"""

from salience_audit.models.runs import find_runs
from salience_audit.training.config import LOSSES, TrainConfig
from salience_audit.training.loss import LossTerms, guided_loss, resize_human_maps
from salience_audit.training.runs import DEFAULT_NAME_PATTERN, group_name, run_name, train_group
from salience_audit.training.score import detection_table, score_samples
from salience_audit.training.trainer import RunResult, evaluate, train_run

__all__ = [
    "DEFAULT_NAME_PATTERN",
    "LOSSES",
    "LossTerms",
    "RunResult",
    "TrainConfig",
    "detection_table",
    "evaluate",
    "find_runs",
    "group_name",
    "guided_loss",
    "resize_human_maps",
    "run_name",
    "score_samples",
    "train_group",
    "train_run",
]
