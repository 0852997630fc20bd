"""One training run: seeded, logged per epoch, best-validation checkpoint, resumable.

Per epoch: shuffle (generator seeded from ``(seed, epoch)``), optional horizontal flips,
SGD steps on ``guided_loss`` (plain cross-entropy when alpha = 1), a validation pass,
a StepLR step, then atomic writes of the log, ``model.pt`` (when validation accuracy
improved) and ``checkpoint-last.pt`` (model, optimiser, scheduler, best state, log and
the global RNG states). On CPU the same config, data and seed give bit-identical weights
and logs, whether or not the run was interrupted and resumed.
"""

from __future__ import annotations

import logging
import math
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from salience_audit.progress import bar_disable

import salience_audit
from salience_audit.data.images import ImageDataset
from salience_audit.data.manifest import manifest_hash
from salience_audit.data.sample import CLASS_NAMES, Sample
from salience_audit.device import resolve_device
from salience_audit.errors import InputError, ModelError
from salience_audit.models.audit_model import AuditModel
from salience_audit.models.runs import (
    LAST_CHECKPOINT,
    MODEL_FILE,
    atomic_torch_save,
    read_run_info,
    write_log,
    write_run_info,
)
from salience_audit.salience.cam import CamHook, class_activation_maps
from salience_audit.training.config import TrainConfig
from salience_audit.training.loss import guided_loss, resize_human_maps
from salience_audit.training.seeding import (
    capture_rng_state,
    deterministic_mode,
    epoch_seed,
    restore_rng_state,
    seed_everything,
    seed_worker,
)

__all__ = ["RunResult", "evaluate", "resolve_device", "train_run"]

logger = logging.getLogger(__name__)

_CHECKPOINT_FORMAT = 1


@dataclass
class RunResult:
    """What :func:`train_run` did.

    Attributes:
        run_dir: the run folder.
        name: run name.
        best_epoch: 1-based epoch whose weights are in ``model.pt``.
        best_val_acc: validation accuracy of that epoch.
        skipped: True when the folder already held a finished run (nothing trained).
        resumed_from: number of epochs restored from ``checkpoint-last.pt`` (None: fresh).
        log: the per-epoch rows.
    """

    run_dir: Path
    name: str
    best_epoch: int
    best_val_acc: float
    skipped: bool = False
    resumed_from: int | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- batches
def _forward(model: AuditModel, images: Tensor, with_cam: bool,
             require_cam: bool = True) -> tuple[Tensor, Tensor | None]:
    """Logits and (if asked) the differentiable normalised CAMs of the predicted class.

    When the classifier weights do not fit the CAM layer's channels (no CAM for this head),
    ``require_cam`` raises ``ModelError``; otherwise the CAMs are None.
    """
    if not with_cam:
        return model(images), None
    if model.classifier_layer is None:
        if require_cam:
            raise ModelError(f"{model.name}: no classifier layer, the guided loss needs a CAM")
        return model(images), None
    with CamHook(model.resolve_layer(model.cam_layer)) as hook:
        logits = model(images)
    features, weight = hook.features, model.classifier_weight()
    if features.dim() != 4 or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        if require_cam:
            raise ModelError(
                f"{model.name}: the classifier weights {tuple(weight.shape)} do not fit the CAM layer "
                f"{model.cam_layer!r} output {tuple(features.shape)}: no CAM, so no guided loss for {model.arch}")
        return logits, None
    cams = class_activation_maps(features, weight, logits.detach().argmax(dim=1))
    return logits, cams


def _flip(batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    """Flip left-right a random half (in expectation) of the images and their human maps."""
    images = batch["image"]
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = dict(batch)
    out["image"] = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    hm = batch["human_map"]
    out["human_map"] = torch.where(flip.view(-1, *([1] * (hm.dim() - 1))), hm.flip(-1), hm)
    return out


def _loader(dataset: ImageDataset, config: TrainConfig, shuffle: bool, generator: torch.Generator | None,
            device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=config.num_workers,
        worker_init_fn=seed_worker if config.num_workers > 0 else None,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )


def _train_epoch(model: AuditModel, loader: DataLoader, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 device: torch.device, aug_generator: torch.Generator, bar: Any) -> dict[str, float]:
    """One pass over the training data; returns sample-weighted means of the loss terms."""
    model.train()
    alpha = float(config.alpha)
    with_cam = alpha < 1.0
    totals = {"loss": torch.zeros((), device=device), "ce": torch.zeros((), device=device),
              "mse": torch.zeros((), device=device), "correct": torch.zeros((), device=device)}
    n_seen = 0
    n_maps = 0
    for batch in loader:
        if config.augment:
            batch = _flip(batch, aug_generator)
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True).long()
        human = batch["human_map"].to(device, non_blocking=True) if with_cam else None
        has_map = batch["has_human_map"].to(device, non_blocking=True) if with_cam else None
        logits, cams = _forward(model, images, with_cam)
        terms = guided_loss(logits, cams, human, has_map, labels, alpha)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        b = images.shape[0]
        n_seen += b
        n_maps += terms.n_maps
        totals["loss"] += terms.total.detach() * b
        totals["ce"] += terms.ce.detach() * b
        totals["mse"] += terms.mse.detach() * terms.n_maps
        totals["correct"] += (logits.detach().argmax(dim=1) == labels).sum()
        bar.update(1)
    vals = {k: float(v.item()) for k, v in totals.items()}
    if not math.isfinite(vals["loss"]):
        raise ModelError(f"training diverged: the loss is {vals['loss']} (try a lower learning rate)")
    return {
        "loss": vals["loss"] / n_seen,
        "ce": vals["ce"] / n_seen,
        "mse": vals["mse"] / n_maps if with_cam and n_maps else float("nan"),
        "train_acc": vals["correct"] / n_seen,
    }


@torch.no_grad()
def evaluate(model: AuditModel, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Validation accuracy, mean cross-entropy and mean CAM-vs-human MSE (images with a map).

    val_mse = mean over mapped images of mean_{u,v} (S_cam - H)^2, with S_cam the CAM of the
    predicted class and H the human map at CAM resolution (NaN when no image has a map).
    """
    model.eval()
    ce_sum = torch.zeros((), device=device, dtype=torch.float64)
    mse_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    n_maps = 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True).long()
        has_map = batch["has_human_map"].to(device).bool()
        logits, cams = _forward(model, images, with_cam=True, require_cam=False)
        ce_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == labels).sum()
        n += images.shape[0]
        if cams is not None and bool(has_map.any()):
            target = resize_human_maps(batch["human_map"].to(device), tuple(cams.shape[-2:]))
            per = (cams - target).pow(2).flatten(1).mean(dim=1)
            mse_sum += torch.where(has_map, per, torch.zeros_like(per)).sum().double()
            n_maps += int(has_map.sum().item())
    return {
        "val_acc": float(correct.item()) / n,
        "val_loss": float(ce_sum.item()) / n,
        "val_mse": float(mse_sum.item()) / n_maps if n_maps else float("nan"),
    }


def validation_objective(val_stats: dict[str, float], config: TrainConfig) -> float:
    """The training loss on the validation set: alpha * CE + (1 - alpha) * MSE(CAM, human map).

    For cross-entropy runs (alpha = 1), or when no validation image has a human map, it is
    the validation cross-entropy. Used to break ties of validation accuracy.
    """
    alpha = 1.0 if config.alpha is None else float(config.alpha)
    mse = val_stats.get("val_mse", float("nan"))
    if alpha >= 1.0 or not math.isfinite(mse):
        return float(val_stats["val_loss"])
    return alpha * float(val_stats["val_loss"]) + (1.0 - alpha) * mse


def _is_better(acc: float, objective: float, best: dict[str, Any]) -> bool:
    """Best checkpoint rule: higher validation accuracy; equal accuracy and lower validation objective.

    Small validation sets saturate (accuracy 1.0 reached early); the tie-break keeps training
    progress on the loss the run optimises (for guided runs, the map term) instead of freezing
    the first epoch that reached the top accuracy.
    """
    if acc != best["acc"]:
        return acc > best["acc"]
    return objective < best.get("objective", math.inf)


# ---------------------------------------------------------------------------- resume
def _hashes(train_samples: Sequence[Sample], val_samples: Sequence[Sample]) -> dict[str, str]:
    """Manifest hashes of the training and validation data; ``resume`` also notes the human maps."""
    train, val = manifest_hash(list(train_samples)), manifest_hash(list(val_samples))
    n_maps = sum(s.human_map is not None for s in train_samples)
    return {
        "train": train,
        "val": val,
        "all": manifest_hash(list(train_samples) + list(val_samples)),
        "resume": f"{train}:{val}:{n_maps}",
    }


def _load_resume_state(run_dir: Path, config: TrainConfig, hashes: dict[str, str]) -> dict[str, Any] | None:
    """The saved state of an interrupted run, or None (fresh start) with a warning if unusable."""
    path = run_dir / LAST_CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError("unknown checkpoint layout")
        for key in ("epoch", "model", "optimizer", "scheduler", "rng", "log", "best_state"):
            if key not in state:
                raise ValueError(f"missing {key!r}")
    except Exception as exc:  # noqa: BLE001 - any unreadable state means: start again
        warnings.warn(f"{path}: resume state unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
                      "training this run again from scratch", stacklevel=3)
        return None
    if state.get("recipe") != config.recipe_dict() or state.get("data_hash") != hashes["resume"]:
        warnings.warn(f"{path}: saved with another training config or data; training from scratch",
                      stacklevel=3)
        return None
    return state


def _checkpoint(run_dir: Path, epoch: int, model: AuditModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, best: dict[str, Any],
                log: list[dict[str, Any]], config: TrainConfig, hashes: dict[str, str]) -> None:
    state = {
        "format": _CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": model.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "best_state": best["state"],
        "best_epoch": best["epoch"],
        "best_val_acc": best["acc"],
        "best_val_objective": best.get("objective", math.inf),
        "log": log,
        "recipe": config.recipe_dict(),
        "data_hash": hashes["resume"],
    }
    atomic_torch_save(state, run_dir / LAST_CHECKPOINT)


def _run_info(model: AuditModel, config: TrainConfig, name: str, hashes: dict[str, str], n_train: int,
              n_val: int, device: torch.device, best: dict[str, Any], epochs_done: int,
              finished: bool) -> dict[str, Any]:
    """The ``run.json`` content (what ``load_run`` and the audit need, plus provenance)."""
    return {
        "arch": model.arch,
        "num_classes": model.num_classes,
        "class_names": list(CLASS_NAMES),
        "input_size": model.input_size,
        "mean": [float(v) for v in model.mean.flatten().tolist()],
        "std": [float(v) for v in model.std.flatten().tolist()],
        "cam_layer": model.cam_layer,
        "classifier_layer": model.classifier_layer,
        "name": name,
        "seed": config.seed,
        "group": config.group_name,
        "loss": config.loss,
        "alpha": config.alpha,
        "config": config.to_dict(),
        "version": salience_audit.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "manifest_hash": hashes["all"],
        "train_manifest_hash": hashes["train"],
        "val_manifest_hash": hashes["val"],
        "n_train": n_train,
        "n_val": n_val,
        "epochs_done": epochs_done,
        "best_epoch": best["epoch"],
        "best_val_acc": best["acc"],
        "finished": finished,
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _recipe_of(info: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe of a finished run's ``run.json`` (None when unreadable)."""
    try:
        return TrainConfig.from_dict(dict(info.get("config") or {})).recipe_dict()
    except Exception:  # noqa: BLE001 - any bad stored config just counts as "different"
        return None


# ---------------------------------------------------------------------------- main loop
def train_run(
    config: TrainConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    out_dir: str | Path,
    progress: bool = True,
    force: bool = False,
    name: str | None = None,
    on_epoch: Callable[[Path, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train one model and write its run folder (see :mod:`salience_audit.models.runs`).

    Args:
        config: the recipe (arch, loss, alpha, optimiser, schedule, seed ...).
        train_samples: training images (labels 0 Real / 1 Synthetic; human maps optional).
        val_samples: validation images; the epoch with the best accuracy on them is kept
            (ties: the lower validation loss alpha * CE + (1 - alpha) * MSE, then the earlier epoch).
        out_dir: the run folder (created).
        progress: show a tqdm progress bar.
        force: retrain even if the folder holds a finished run (and ignore resume state).
        name: run name (default: the folder name).
        on_epoch: called as ``on_epoch(run_dir, row)`` after each epoch's row is in ``log.csv``
            (``row``: epoch, lr, training and validation statistics, seconds), e.g. to send it to
            an experiment tracker while the run trains.

    A folder whose ``run.json`` says ``finished: true`` is skipped (``skipped=True``)
    unless ``force``. A folder with a readable ``checkpoint-last.pt`` from the same
    config and data resumes after its last finished epoch; an unreadable or mismatched
    one is ignored with a warning and the run starts from scratch.
    """
    run_dir = Path(out_dir)
    name = name or run_dir.name
    if not train_samples:
        raise InputError("no training images (is the 'train' split of the manifest empty?)")
    if not val_samples:
        raise InputError("no validation images (is the 'test' split of the manifest empty?)")
    bad = sorted({s.label for s in list(train_samples) + list(val_samples)} - {0, 1})
    if bad:
        raise InputError(f"training needs labels 0 (Real) and 1 (Synthetic), found {bad}")

    info = read_run_info(run_dir)
    if info is not None and info.get("finished") and not force:
        if _recipe_of(info) != config.recipe_dict():
            warnings.warn(f"{run_dir}: a finished run trained with another config is kept; use force to "
                          "retrain it with this one", stacklevel=2)
        logger.info("%s: finished run found, skipping (use force to retrain)", run_dir)
        return RunResult(run_dir=run_dir, name=str(info.get("name", name)),
                         best_epoch=int(info.get("best_epoch", 0)),
                         best_val_acc=_float_or_nan(info.get("best_val_acc")), skipped=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if force:
        (run_dir / LAST_CHECKPOINT).unlink(missing_ok=True)

    device = resolve_device(config.device)
    hashes = _hashes(train_samples, val_samples)
    with deterministic_mode(config.deterministic):
        return _train(config, list(train_samples), list(val_samples), run_dir, name, device, hashes, progress,
                      on_epoch)


def _train(config: TrainConfig, train_samples: list[Sample], val_samples: list[Sample], run_dir: Path,
           name: str, device: torch.device, hashes: dict[str, str], progress: bool,
           on_epoch: Callable[[Path, dict[str, Any]], None] | None = None) -> RunResult:
    seed_everything(config.seed)
    model = AuditModel.from_arch(config.arch, num_classes=len(CLASS_NAMES), weights=config.weights, name=name)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)

    train_ds = ImageDataset(train_samples, model.input_size)
    val_ds = ImageDataset(val_samples, model.input_size)
    order_gen = torch.Generator()
    aug_gen = torch.Generator()
    train_loader = _loader(train_ds, config, True, order_gen, device)
    val_loader = _loader(val_ds, config, False, torch.Generator().manual_seed(0), device)  # global RNG untouched

    best: dict[str, Any] = {"epoch": 0, "acc": -math.inf, "objective": math.inf, "state": None}
    log: list[dict[str, Any]] = []
    start = 0
    resumed_from = None
    state = _load_resume_state(run_dir, config, hashes)
    if state is not None:
        model.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        best = {"epoch": int(state["best_epoch"]), "acc": float(state["best_val_acc"]),
                "objective": float(state.get("best_val_objective", math.inf)), "state": state["best_state"]}
        log = list(state["log"])
        start = resumed_from = int(state["epoch"])
        logger.info("%s: resuming after epoch %d", run_dir, start)

    write_run_info(run_dir, _run_info(model, config, name, hashes, len(train_samples), len(val_samples), device,
                                      best, start, finished=False))
    bar = tqdm(total=config.epochs * len(train_loader), initial=start * len(train_loader), desc=name,
               disable=bar_disable(progress), unit="batch", dynamic_ncols=True, leave=True)
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            order_gen.manual_seed(epoch_seed(config.seed, epoch, stream=0))
            aug_gen.manual_seed(epoch_seed(config.seed, epoch, stream=1))
            lr = float(optimizer.param_groups[0]["lr"])
            train_stats = _train_epoch(model, train_loader, optimizer, config, device, aug_gen, bar)
            val_stats = evaluate(model, val_loader, device)
            scheduler.step()
            row = {"epoch": epoch + 1, "lr": lr, **train_stats, **val_stats,
                   "seconds": round(time.perf_counter() - t0, 3)}
            log.append(row)
            objective = validation_objective(val_stats, config)
            if _is_better(val_stats["val_acc"], objective, best):
                best = {"epoch": epoch + 1, "acc": val_stats["val_acc"], "objective": objective,
                        "state": {k: v.detach().cpu().clone() for k, v in model.module.state_dict().items()}}
                atomic_torch_save(best["state"], run_dir / MODEL_FILE)
            write_log(run_dir, log)
            _checkpoint(run_dir, epoch + 1, model, optimizer, scheduler, best, log, config, hashes)
            if on_epoch is not None:
                on_epoch(run_dir, dict(row))
            bar.set_postfix(epoch=epoch + 1, loss=f"{row['loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
    finally:
        bar.close()

    atomic_torch_save(best["state"], run_dir / MODEL_FILE)
    write_log(run_dir, log)
    write_run_info(run_dir, _run_info(model, config, name, hashes, len(train_samples), len(val_samples), device,
                                      best, config.epochs, finished=True))
    (run_dir / LAST_CHECKPOINT).unlink(missing_ok=True)
    return RunResult(run_dir=run_dir, name=name, best_epoch=best["epoch"], best_val_acc=best["acc"],
                     resumed_from=resumed_from, log=log)
