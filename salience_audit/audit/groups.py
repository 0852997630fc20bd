"""The runs of a group, from a glob: run folders, checkpoint files, or precomputed maps.

The command line and Python use the same functions::

    groups = {
        "cyborg": checkpoint_runs("cyborg", "weights/densenet_cyborg_*/Logs/final_model.pth",
                                  ModelRecipe(arch="densenet121")),
        "study": map_runs("study", "cams/gradcam/faces/*/native"),
    }
    run_audit(groups, datasets, "audit/")

:func:`checkpoint_runs` returns run folders (paths, for folders holding ``run.json``) or
:class:`~salience_audit.audit.worker.RunRef` objects carrying the recipe of checkpoint
files; :func:`map_runs` returns ``RunRef`` objects of precomputed maps. Run names come
from the paths (:func:`~salience_audit.models.checkpoint.checkpoint_run_names`).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from salience_audit.audit.worker import RunRef
from salience_audit.errors import InputError, ModelError
from salience_audit.models.checkpoint import CHECKPOINT_SUFFIXES, ModelRecipe, checkpoint_run_names
from salience_audit.salience.precomputed import MapRun

__all__ = ["RECIPE_KEYS", "checkpoint_runs", "map_runs", "model_recipe"]


RECIPE_KEYS: tuple[str, ...] = (
    "arch", "model", "num_classes", "class_names", "input_size", "normalize", "target_layer", "classifier_layer",
)
"""Settings (flags or config keys, globally or per group) that describe checkpoint files."""


def model_recipe(settings: dict[str, Any], source: str | None = None) -> ModelRecipe | None:
    """The :class:`ModelRecipe` of ``settings`` (None when neither ``arch`` nor ``model`` is set)."""
    values = {k: settings[k] for k in RECIPE_KEYS if settings.get(k) is not None}
    if "arch" not in values and "model" not in values:
        return None
    names = values.get("class_names")
    if isinstance(names, str):
        values["class_names"] = tuple(n.strip() for n in names.split(",") if n.strip())
    elif names is not None:
        values["class_names"] = tuple(str(n) for n in names)
    for key in ("num_classes", "input_size"):
        if key in values:
            values[key] = int(values[key])
    if "class_names" in values and "num_classes" not in values:
        values["num_classes"] = len(values["class_names"])
    try:
        return ModelRecipe(**values)
    except ModelError as err:
        raise InputError(str(err), source) from err


def checkpoint_runs(
    name: str, pattern: str, recipe: ModelRecipe | None = None, trust_pickle: bool = False
) -> list[Any]:
    """Members of a group: run folders (with run.json) or checkpoint files matching a glob, sorted.

    Checkpoint files become :class:`RunRef` objects carrying ``recipe`` and a run name taken
    from the path (see :func:`~salience_audit.models.checkpoint.checkpoint_run_names`).
    """
    found = sorted(glob.glob(pattern))
    folders = [p for p in found if (Path(p) / "run.json").exists()]
    files = [p for p in found if Path(p).is_file() and Path(p).suffix.lower() in CHECKPOINT_SUFFIXES]
    if folders and files:
        raise InputError(f"group {name!r}: {pattern!r} matches both run folders and checkpoint files; "
                         "make the glob match one kind")
    if folders:
        return folders
    if files:
        if recipe is None:
            raise InputError(
                f"group {name!r}: {pattern!r} matches {len(files)} checkpoint file(s) (e.g. {files[0]}) without "
                "run.json; say how to rebuild the network with --arch NAME (e.g. densenet121, timm:NAME) or "
                "--model package.module:factory, plus --num-classes if not 2"
            )
        names = checkpoint_run_names(files)
        return [RunRef(name=n, path=p, trust_pickle=trust_pickle, recipe=recipe) for n, p in zip(names, files)]
    others = f" (it matches {len(found)} path(s) that are neither, e.g. {found[0]})" if found else ""
    raise InputError(f"group {name!r}: no run folder (with run.json) matches {pattern!r}, nor does any checkpoint "
                     f"file ({', '.join(CHECKPOINT_SUFFIXES)}){others}{_where(pattern)}")


def _where(pattern: str) -> str:
    """How a glob was resolved, for messages: a relative one is read from the current folder."""
    return "" if Path(pattern).is_absolute() else f"; the pattern is relative to the current folder {Path.cwd()}"


def map_runs(name: str, pattern: str, match: str = "auto") -> list[RunRef]:
    """Runs of precomputed maps: folders or ``.npz`` / ``.parquet`` files matching a glob, sorted."""
    found = sorted(p for p in glob.glob(pattern)
                   if Path(p).is_dir() or Path(p).suffix.lower() in (".npz", ".parquet"))
    if not found:
        raise InputError(f"map group {name!r}: no folder of maps or .npz / .parquet file matches {pattern!r}"
                         f"{_where(pattern)}")
    names = checkpoint_run_names(found)
    return [RunRef(name=n, maps=MapRun(p, match)) for n, p in zip(names, found)]
