"""Groups of independent runs (same recipe, different seeds) and finding run folders.

Naming conventions:

- a *group* (model family, recipe) is ``{arch}-{loss}`` (``-a{alpha}`` appended when a
  cyborg run uses a non-default alpha), or the config's explicit ``group``;
- a *run* folder is ``out_root / name_pattern.format(arch=, loss=, alpha=, seed=, group=)``,
  by default ``{arch}-{loss}-seed{seed}``; the run name is the folder name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from salience_audit.data.sample import Sample
from salience_audit.errors import InputError
from salience_audit.training.config import TrainConfig
from salience_audit.training.trainer import RunResult, train_run

__all__ = ["DEFAULT_NAME_PATTERN", "group_name", "resolve_seeds", "run_name", "train_group"]

DEFAULT_NAME_PATTERN = "{arch}-{loss}-seed{seed}"


def group_name(config: TrainConfig) -> str:
    """The model-family name of a config (``densenet121-cyborg``, ``resnet50-xent`` ...)."""
    return config.group_name


def run_name(config: TrainConfig, name_pattern: str = DEFAULT_NAME_PATTERN) -> str:
    """Folder name of one run: ``name_pattern`` filled with arch, loss, alpha, seed and group."""
    try:
        name = name_pattern.format(arch=config.arch, loss=config.loss, alpha=config.alpha, seed=config.seed,
                                   group=config.group_name)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"bad run name pattern {name_pattern!r} ({exc}); fields: arch, loss, alpha, seed, "
                         "group") from exc
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"run name pattern {name_pattern!r} gives an unusable folder name {name!r}")
    return name


def resolve_seeds(seeds: int | Sequence[int], first: int = 0) -> list[int]:
    """``N`` -> ``[first, ..., first + N - 1]``; a list is taken as is (duplicates refused)."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise InputError(f"the number of runs must be >= 1, got {seeds}")
        return list(range(first, first + seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise InputError("no seeds given")
    if len(set(out)) != len(out):
        raise InputError(f"duplicate seeds in {out}")
    return out


def train_group(
    config: TrainConfig,
    seeds: int | Sequence[int],
    out_root: str | Path,
    *,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    name_pattern: str = DEFAULT_NAME_PATTERN,
    force: bool = False,
    progress: bool = True,
    on_epoch: Callable[[Path, dict[str, Any]], None] | None = None,
    on_run_done: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Train one run per seed (``seeds`` = N gives seeds ``config.seed .. config.seed + N - 1``).

    Each run goes to ``out_root / run_name(config.with_seed(seed), name_pattern)``; finished
    runs are skipped and interrupted ones resumed (see :func:`train_run`). Returns the run
    folders in seed order. ``on_epoch(run_dir, row)`` follows every epoch (see
    :func:`~salience_audit.training.trainer.train_run`); ``on_run_done(run_dir)`` follows each
    run, trained or found finished.
    """
    seed_list = resolve_seeds(seeds, first=config.seed)
    out_root = Path(out_root)
    configs = [config.with_seed(s) for s in seed_list]
    names = [run_name(c, name_pattern) for c in configs]
    if len(set(names)) != len(names):
        raise InputError(f"run name pattern {name_pattern!r} gives the same folder to several seeds; "
                         "include {seed}")
    dirs: list[Path] = []
    for cfg, name in zip(configs, names):
        result: RunResult = train_run(cfg, train_samples, val_samples, out_root / name, progress=progress,
                                      force=force, name=name, on_epoch=on_epoch)
        dirs.append(result.run_dir)
        if on_run_done is not None:
            on_run_done(result.run_dir)
    return dirs
