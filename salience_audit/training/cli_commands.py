"""The ``train`` and ``score`` sub-commands (argparse); ``salience_audit.cli`` wires them in.

    salience-audit train --arch densenet121 --loss cyborg --seeds 10 \\
        --train-manifest train.csv --root /data --human-maps /data/annotations --out runs/
    salience-audit score --runs 'runs/densenet121-*' --manifest progan.csv --manifest stylegan2.csv \\
        --root /data --out scores/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from salience_audit.cli_options import add_common_options, add_log_to_option
from salience_audit.data.manifest import read_manifest, read_manifests
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError, UsageError
from salience_audit.models.registry import list_architectures
from salience_audit.models.runs import atomic_write_text, find_runs, read_run_info
from salience_audit.training.config import LOSSES, TrainConfig
from salience_audit.training.runs import DEFAULT_NAME_PATTERN, train_group
from salience_audit.training.score import detection_table, score_samples

__all__ = ["add_score_parser", "add_train_parser", "parse_seeds", "run_score", "run_train", "split_train_val"]

logger = logging.getLogger(__name__)
_DEFAULTS = TrainConfig()


def parse_seeds(text: str) -> int | list[int]:
    """``"10"`` -> 10 runs (seeds 0..9); ``"0,3,7"`` -> exactly those seeds."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of runs or a comma-separated seed list, got {text!r}")


def _weights(text: str) -> str | None:
    return None if text.lower() in ("none", "random", "") else text


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    p = subparsers.add_parser(
        "train",
        help="train N independent runs of a model family (cross-entropy or human-salience-guided)",
        description="Train N independent runs (one folder each: model.pt, run.json, log.csv) of one "
                    "architecture with plain cross-entropy ('xent') or the human-salience-guided CYBORG "
                    "loss alpha*CE + (1-alpha)*MSE(CAM, human map) ('cyborg'). Defaults follow the original "
                    "study. Finished runs are skipped, interrupted ones resumed.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--train-manifest", required=True, metavar="M",
                      help="manifest of the training data (its 'train' split is used for training)")
    data.add_argument("--val-manifest", metavar="V",
                      help="manifest of the validation data (all its images); default: the 'test' split of "
                           "--train-manifest, as in the original study")
    data.add_argument("--root", metavar="R", help="dataset root the manifest paths are relative to")
    data.add_argument("--human-maps", metavar="DIR",
                      help="folder of human annotation maps named like the images (needed by --loss cyborg)")
    model = p.add_argument_group("model and loss")
    model.add_argument("--arch", default=_DEFAULTS.arch,
                       help=f"architecture: {', '.join(list_architectures())} (default: %(default)s)")
    model.add_argument("--loss", choices=LOSSES, default=_DEFAULTS.loss,
                       help="'xent' (cross-entropy) or 'cyborg' (human-salience-guided); default: %(default)s")
    model.add_argument("--alpha", type=float, default=None,
                       help="weight of cross-entropy in the cyborg loss (default 0.5; xent always uses 1)")
    model.add_argument("--weights", type=_weights, default=_DEFAULTS.weights,
                       help="initial weights: 'imagenet' (local torchvision cache, the study's choice), "
                            "'none' (random init) or a state-dict file; default: %(default)s")
    opt = p.add_argument_group("optimisation (defaults: the original recipe)")
    opt.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="epochs per run (default: %(default)s)")
    opt.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                     help="images per SGD step (default: %(default)s)")
    opt.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="SGD learning rate (default: %(default)s)")
    opt.add_argument("--momentum", type=float, default=_DEFAULTS.momentum,
                     help="SGD momentum (default: %(default)s)")
    opt.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                     help="SGD weight decay (default: %(default)s)")
    opt.add_argument("--step-size", type=int, default=_DEFAULTS.step_size,
                     help="epochs between learning-rate decays (default: %(default)s)")
    opt.add_argument("--gamma", type=float, default=_DEFAULTS.gamma,
                     help="learning-rate decay factor (default: %(default)s)")
    opt.add_argument("--augment", action="store_true",
                     help="random horizontal flips of training images and their maps (default: off)")
    runs = p.add_argument_group("runs")
    runs.add_argument("--seeds", type=parse_seeds, default=1, metavar="N|S1,S2,...",
                      help="number of independent runs (seeds 0..N-1) or an explicit comma-separated seed list "
                           "(default: 1; the study used 10)")
    runs.add_argument("--name-pattern", default=DEFAULT_NAME_PATTERN,
                      help="run folder name, with fields {arch} {loss} {alpha} {seed} {group} "
                           "(default: %(default)s)")
    runs.add_argument("--group", default=None,
                      help="model-family name recorded in run.json (default: {arch}-{loss})")
    runs.add_argument("--force", action="store_true", help="retrain runs that already finished")
    system = p.add_argument_group("system")
    system.add_argument("--num-workers", type=int, default=_DEFAULTS.num_workers,
                        help="data-loading worker processes, 0 = main process (default: %(default)s)")
    add_common_options(p, out_help="folder receiving one sub-folder per run (default: %(default)s)",
                       out_default="runs",
                       seed_help="first seed: --seeds N trains seeds S..S+N-1 (default 0); not with a seed list")
    add_log_to_option(p)
    p.set_defaults(func=run_train)
    return p


def split_train_val(train_manifest: list[Sample], val_manifest: list[Sample] | None,
                    source: str) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples following the original study's convention.

    Without a validation manifest: training = the ``train`` split, validation = the ``test``
    split of the training manifest. With one: validation = all of it, training = the
    ``train`` split (or every sample when the manifest has no split column values 'train').
    """
    train = [s for s in train_manifest if s.split == "train"]
    if val_manifest is None:
        val = [s for s in train_manifest if s.split == "test"]
        if not train or not val:
            raise InputError(f"the manifest needs both 'train' and 'test' rows when no --val-manifest is given "
                             f"(found {len(train)} train, {len(val)} test)", source)
        return train, val
    if not train:
        train = list(train_manifest)
    return train, list(val_manifest)


def run_train(args: argparse.Namespace) -> int:
    """Run the ``train`` sub-command; returns the exit status."""
    config = TrainConfig(
        arch=args.arch, loss=args.loss, alpha=args.alpha, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, step_size=args.step_size, gamma=args.gamma, batch_size=args.batch_size,
        epochs=args.epochs, augment=args.augment, weights=args.weights, device=args.device or _DEFAULTS.device,
        num_workers=args.num_workers, group=args.group, seed=_first_seed(args),
    )
    from salience_audit.tracking import TrainingLog, open_trackers

    trackers = open_trackers(args.log_to)  # a missing tracker extra stops here, before any training
    manifest = read_manifest(args.train_manifest, root=args.root, human_maps=args.human_maps)
    val_manifest = (read_manifest(args.val_manifest, root=args.root, human_maps=args.human_maps)
                    if args.val_manifest else None)
    train, val = split_train_val(manifest, val_manifest, args.train_manifest)
    if config.loss == "cyborg" and not any(s.human_map is not None for s in train):
        raise InputError("--loss cyborg needs human maps for (some of) the training images: pass --human-maps "
                         "or a human_map column", args.train_manifest)
    tracking = TrainingLog(trackers)  # each epoch reaches the trackers as it ends
    try:
        dirs = train_group(config, args.seeds, args.out, train_samples=train, val_samples=val,
                           name_pattern=args.name_pattern, force=args.force, progress=not args.quiet,
                           on_epoch=tracking.epoch, on_run_done=tracking.run_done)
    finally:
        tracking.close()
    for d in dirs:
        info = read_run_info(d) or {}
        print(f"{d}\tbest epoch {info.get('best_epoch')}\tval acc {info.get('best_val_acc')}")
    return 0


def _first_seed(args: argparse.Namespace) -> int:
    """``--seed S`` with ``--seeds N`` -> first seed S; with an explicit seed list it is a usage error."""
    if args.seed is None:
        return _DEFAULTS.seed
    if isinstance(args.seeds, list):
        raise UsageError("--seed S sets the first of --seeds N seeds; with a seed list (--seeds 0,3,7) leave it out")
    return int(args.seed)


def add_score_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``score`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    p = subparsers.add_parser(
        "score",
        help="score images with trained runs: probability of 'Synthetic' and detection metrics",
        description="Score every image of the manifests with every matching run. Writes scores.csv "
                    "(run, group, path, key, dataset, label, score = P(Synthetic), pred) and detection.csv "
                    "(accuracy, ROC-AUC, APCER, BPCER, ACER per run and dataset).",
    )
    p.add_argument("--runs", required=True, metavar="PATTERN",
                   help="run folders: a glob such as 'runs/densenet121-cyborg-*', or a folder of runs")
    p.add_argument("--manifest", required=True, action="append", metavar="M",
                   help="manifest of images to score (repeat for several datasets / generators)")
    p.add_argument("--root", metavar="R", help="dataset root the manifest paths are relative to")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="data-loading worker processes, 0 = main process (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="score above which an image is called Synthetic (default: %(default)s)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="accept a model.pt that is a pickled whole model (torch.save(model)); unpickling can "
                        "run arbitrary code from the file, so use it only for files you trust")
    add_common_options(p, out_help="folder receiving scores.csv and detection.csv (default: %(default)s)",
                       out_default="scores",
                       seed_help="seed of torch's random number generators (scoring itself draws none; default 0)")
    p.set_defaults(func=run_score)
    return p


def run_score(args: argparse.Namespace) -> int:
    """Run the ``score`` sub-command; returns the exit status."""
    import torch

    from salience_audit.device import resolve_device
    from salience_audit.models.audit_model import load_run

    from salience_audit.schema import check_flags
    from salience_audit.training.score import ScoreSettings

    check_flags(ScoreSettings, {k: getattr(args, k) for k in ("batch_size", "num_workers", "threshold", "device")})
    run_dirs = find_runs(args.runs)
    samples = read_manifests(args.manifest, root=args.root)
    device = resolve_device(args.device or "auto")
    torch.manual_seed(args.seed or 0)
    frames = []
    for run_dir in run_dirs:
        info = read_run_info(run_dir) or {}
        model = load_run(run_dir, trust_pickle=bool(getattr(args, "trust_pickle", False))).to(device)
        df = score_samples(model, samples, batch_size=args.batch_size, device=device,
                           num_workers=args.num_workers, progress=not args.quiet)
        df.insert(0, "group", str(info.get("group", "")))
        df.insert(0, "run", model.name)
        frames.append(df)
    scores = pd.concat(frames, ignore_index=True)
    detection = detection_table(scores, threshold=args.threshold, by=("group", "run", "dataset"))
    out = Path(args.out)
    atomic_write_text(out / "scores.csv", scores.to_csv(index=False))
    atomic_write_text(out / "detection.csv", detection.to_csv(index=False))
    print(detection.to_string(index=False))
    return 0
