"""Score images with a trained model and summarise detection quality per dataset.

The score of an image is the probability of "Synthetic": softmax(logits)[:, 1]; the
prediction is argmax(logits) (Synthetic when score > 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from salience_audit.progress import bar_disable

from salience_audit.data.images import ImageDataset
from salience_audit.data.sample import Sample
from salience_audit.models.audit_model import AuditModel
from salience_audit.models.scores import synthetic_probability
from salience_audit.schema import Count, DeviceName, NonNegative, Probability
from salience_audit.stats.detection import detection_metrics

__all__ = ["DETECTION_COLUMNS", "SCORE_COLUMNS", "ScoreSettings", "detection_table", "score_samples"]


class ScoreSettings(BaseModel):
    """The numeric flags of ``score``, under the same rules as an audit's settings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    batch_size: Count = 64
    num_workers: NonNegative = 0
    threshold: Probability = 0.5
    device: DeviceName = "auto"

SCORE_COLUMNS: tuple[str, ...] = ("path", "key", "dataset", "label", "score", "pred")
DETECTION_COLUMNS: tuple[str, ...] = (
    "dataset", "n", "n_real", "n_synthetic", "accuracy", "roc_auc", "apcer", "bpcer", "acer",
)


@torch.no_grad()
def score_samples(
    model: AuditModel,
    samples: Sequence[Sample],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per sample: ``path, key, dataset, label, score, pred`` (manifest order).

    ``score`` = softmax(model(x))[:, 1] (float64 column), ``pred`` = argmax of the logits.
    ``device`` None keeps the model where it is.
    """
    if device is not None:
        model = model.to(torch.device(device))
    dev = model.device
    was_training = model.training
    model.eval()
    samples = list(samples)
    loader = DataLoader(ImageDataset(samples, model.input_size), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=dev.type == "cuda")
    scores: list[torch.Tensor] = []
    preds: list[torch.Tensor] = []
    for batch in tqdm(loader, desc=f"score {model.name}", disable=bar_disable(progress), unit="batch"):
        logits = model(batch["image"].to(dev, non_blocking=True))
        scores.append(synthetic_probability(logits).cpu())
        preds.append(logits.argmax(dim=1).cpu())
    model.train(was_training)
    score = torch.cat(scores).double().numpy() if scores else []
    pred = torch.cat(preds).numpy() if preds else []
    return pd.DataFrame({
        "path": [s.path for s in samples],
        "key": [s.key or s.path for s in samples],
        "dataset": [s.dataset for s in samples],
        "label": pd.array([s.label for s in samples], dtype="int64"),
        "score": pd.array(score, dtype="float64"),
        "pred": pd.array(pred, dtype="int64"),
    }, columns=list(SCORE_COLUMNS))


def detection_table(df: pd.DataFrame, threshold: float = 0.5, by: Sequence[str] = ("dataset",)) -> pd.DataFrame:
    """Detection metrics per group of ``by`` columns (default: per dataset).

    Columns: the ``by`` columns, ``n, n_real, n_synthetic, accuracy, roc_auc, apcer, bpcer,
    acer`` (see :func:`salience_audit.stats.detection.detection_metrics`). Rows with an
    unknown label (-1) are left out.
    """
    by = list(by)
    known = df[df["label"].isin([0, 1])]
    rows = []
    for keys, part in known.groupby(by, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        metrics = detection_metrics(part["score"].to_numpy(), part["label"].to_numpy(), threshold=threshold)
        row = dict(zip(by, keys))
        row.update(metrics)
        for k in ("n", "n_real", "n_synthetic"):
            row[k] = int(row[k])
        rows.append(row)
    columns = by + [c for c in DETECTION_COLUMNS if c != "dataset"]
    return pd.DataFrame(rows, columns=columns)
