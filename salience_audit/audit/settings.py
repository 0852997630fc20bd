"""The one typed schema of an audit's settings: config file keys and command-line flags.

Every value a user can give an audit (a key of the ``--config`` YAML / TOML file or a
flag) goes through :class:`AuditSettings`, a pydantic model, before anything is read or
written: types (strict: the string ``"0.7"`` is not a number, ``5`` is not a list of
measures), ranges (counts >= 1, thresholds in [0, 1], finite floats) and duplicates.
Every problem is reported as an :class:`~salience_audit.errors.InputError` naming where
the value came from (``config.yaml: batch_size`` or ``--batch-size``), never a traceback.

Adding a setting: add a field here (with its type, default, range and a one-line
``description``); when it has a flag, give the flag the field's name as its argparse
``dest`` (``--my-key`` -> ``my_key``) and :func:`settings_from_sources` picks it up.
Keys that only make sense on the command line (they weaken a safety check for one
invocation) are listed in :data:`COMMAND_LINE_ONLY` and refused in a config file.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from salience_audit.audit.config import MEASURES, AuditConfig, selectable_measures
from salience_audit.schema import (
    Count,
    DeviceName,
    NonNegative,
    PathText,
    Probability,
    comma_list,
    flag_name,
    one_or_many,
    problems_of,
    raise_problems,
    shown,
)

SPLITS: tuple[str, ...] = ("test", "audit", "train")
"""Manifest splits; ``train`` rows are left out of an audit unless ``splits`` asks for them."""

DEFAULT_SPLITS: tuple[str, ...] = ("test", "audit")

COMMAND_LINE_ONLY: frozenset[str] = frozenset({"force", "trust_pickle"})
"""Settings refused in a config file: a reused file must not silently weaken a check."""

def _count_or_auto(value: Any) -> Any:
    """A whole number >= 1, or the text ``auto`` (strict: ``"24"`` is not a number)."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number >= 1 or 'auto', got {shown(value)}")
    if value < 1:
        raise ValueError(f"input should be greater than or equal to 1, got {shown(value)}")
    return value


_DEFAULT: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(AuditConfig) if f.default is not dataclasses.MISSING
}
"""The defaults live on :class:`AuditConfig` (one home); the schema adds types and ranges."""


class ComputeSettings(BaseModel):
    """How the measures are computed: the fields of :class:`AuditConfig`, typed and range-checked.

    :class:`AuditConfig` validates itself through this model, so the Python API and the
    command line share one set of rules.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: StrictStr = Field(default=_DEFAULT["method"], description="salience method")
    salience_path: StrictStr = Field(
        default=_DEFAULT["salience_path"],
        description="auto (forward-only where the head allows it, checked), forward or autograd",
    )
    measures: Annotated[tuple[StrictStr, ...], BeforeValidator(comma_list)] = Field(
        default=_DEFAULT["measures"], description="measures to compute, or 'all'"
    )
    target: Literal["predicted", "label"] = _DEFAULT["target"]
    batch_size: Annotated[int | str, BeforeValidator(_count_or_auto)] = Field(
        default=_DEFAULT["batch_size"],
        description="images per model pass, or 'auto' (largest that fits on CUDA; 16 on the CPU)",
    )
    shard_size: Count = _DEFAULT["shard_size"]
    device: DeviceName = _DEFAULT["device"]
    num_workers: NonNegative = _DEFAULT["num_workers"]
    amp: StrictBool = _DEFAULT["amp"]
    channels_last: StrictBool = _DEFAULT["channels_last"]
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] = _DEFAULT["seed"]
    noise_levels: tuple[Probability, ...] = Field(default=_DEFAULT["noise_levels"], min_length=1)
    deletion_steps: Count = _DEFAULT["deletion_steps"]
    on_bad_image: Literal["stop", "skip"] = _DEFAULT["on_bad_image"]
    gallery_size: NonNegative = _DEFAULT["gallery_size"]
    threshold: Probability = _DEFAULT["threshold"]
    profile: Literal["default", "study"] = Field(
        default=_DEFAULT["profile"],
        description="conventions: default (corrected definitions) or study (the original study's code; docs/fidelity.md)",
    )
    min_runs: Annotated[StrictInt, Field(ge=2, description="runs per group a family verdict needs")] = _DEFAULT["min_runs"]

    @field_validator("measures", mode="after")
    @classmethod
    def _known_measures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value == ("all",):
            return MEASURES
        if not value:
            raise ValueError("give at least one measure")
        known = selectable_measures()
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}, all")
        return tuple(dict.fromkeys(value))

    @field_validator("method", mode="after")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from salience_audit.salience.extract import METHODS

        if value not in METHODS and ":" not in value:  # package.module:function = a user explainer
            raise ValueError(f"unknown salience method {value!r}; known: {', '.join(METHODS)}, "
                             "or package.module:function for your own explainer")
        return value

    @field_validator("salience_path", mode="after")
    @classmethod
    def _known_path(cls, value: str) -> str:
        from salience_audit.salience.forward import SALIENCE_PATHS

        if value not in SALIENCE_PATHS:
            raise ValueError(f"unknown salience path {value!r}; known: {', '.join(SALIENCE_PATHS)}")
        return value

    @model_validator(mode="after")
    def _study_is_full_precision(self) -> ComputeSettings:
        """The ``study`` profile promises the original study's float32 passes bit for bit; mixed
        precision changes every map and channels-last the float rounding of every convolution."""
        changed = [flag for flag, on in (("--amp", self.amp), ("--channels-last", self.channels_last)) if on]
        if self.profile == "study" and changed:
            raise ValueError(f"profile 'study' reproduces the original study's full-precision passes bit for bit; "
                             f"{' and '.join(changed)} would change its numbers: drop {'them' if len(changed) > 1 else 'it'} "
                             "or use profile 'default'")
        return self

    def audit_config(self) -> AuditConfig:
        """The computation settings as the :class:`AuditConfig` the engines and workers take."""
        return AuditConfig(**{key: getattr(self, key) for key in ComputeSettings.model_fields})


Normalize = Annotated[StrictStr, Field(min_length=1)]


class GroupSpec(BaseModel):
    """A group in a config file with its own recipe: ``{pattern: ..., arch: ..., ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: PathText = Field(description="glob of run folders or checkpoint files")
    arch: PathText | None = None
    model: PathText | None = None
    num_classes: Count | None = None
    class_names: Annotated[tuple[StrictStr, ...], BeforeValidator(comma_list)] | None = None
    input_size: Annotated[StrictInt, Field(ge=8)] | None = None
    normalize: Normalize | None = None
    target_layer: PathText | None = None
    classifier_layer: PathText | None = None


class AuditSettings(ComputeSettings):
    """Everything an ``audit`` is told: what to audit, where to write, and how to compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # what to audit and where the results go
    groups: dict[str, PathText | GroupSpec] = Field(
        default_factory=dict, description="group name -> glob of run folders or checkpoint files (or a GroupSpec)"
    )
    map_groups: dict[str, PathText] = Field(
        default_factory=dict, description="group name -> glob of precomputed-map runs (folders, .npz, .parquet)"
    )
    # how to rebuild checkpoint files (docs/byo.md); per group in a GroupSpec
    arch: PathText | None = Field(default=None, description="architecture of checkpoint files (or timm:NAME)")
    model: PathText | None = Field(default=None, description="package.module:factory or file.py:Class (runs it)")
    num_classes: Count | None = Field(default=None, description="classifier outputs of checkpoint files")
    class_names: Annotated[tuple[StrictStr, ...], BeforeValidator(comma_list)] | None = Field(
        default=None, description="class names of checkpoint files, in output order"
    )
    input_size: Annotated[StrictInt, Field(ge=8)] | None = Field(default=None, description="input side in pixels")
    normalize: Normalize | None = Field(default=None, description="imagenet, half, none or m1,m2,m3/s1,s2,s3")
    target_layer: PathText | None = Field(default=None, description="salience layer (default: found automatically)")
    classifier_layer: PathText | None = Field(default=None, description="final nn.Linear of checkpoint networks")
    # data as it is
    human_map_match: Literal["auto", "path", "stem"] = Field(
        default="auto", description="maps matched by relative path then unambiguous stem, path only, or stem"
    )
    label: Literal["real", "synthetic"] | None = Field(
        default=None, description="label of every image of a flat image folder given as an in-set dataset"
    )
    ood_label: Literal["real", "synthetic", "unknown"] | None = Field(
        default=None, description="label of every image of a flat out-of-set folder (default unknown)"
    )
    class_folders: PathText | dict[StrictStr, StrictStr | StrictInt] | None = Field(
        default=None, description="class sub-folder names, e.g. authentic=Real,gan=Synthetic"
    )
    manifests: Annotated[list[PathText], BeforeValidator(one_or_many), Field(min_length=1)] = Field(
        description="test datasets: manifest CSVs or class-per-folder directories ([NAME=]PATH)"
    )
    ood_manifests: Annotated[list[PathText], BeforeValidator(one_or_many)] = Field(
        default_factory=list, description="out-of-set datasets ([NAME=]PATH)"
    )
    root: PathText | None = Field(default=None, description="dataset root joined to manifest paths")
    human_maps: PathText | None = Field(default=None, description="folder of human annotation maps")
    out: PathText = Field(default="audit-output", description="output folder")
    compare_with: PathText | None = Field(default=None, description="another audit folder to compare with")
    splits: Annotated[tuple[Literal["test", "audit", "train"], ...], BeforeValidator(comma_list)] = Field(
        default=DEFAULT_SPLITS, description="manifest splits audited (train rows are skipped by default)"
    )
    allow_unfinished: StrictBool = Field(default=False, description="audit runs whose training did not finish")
    force: StrictBool = Field(default=False, description="write into a non-empty folder that is not an audit folder")
    trust_pickle: StrictBool = Field(default=False, description="accept pickled whole models (runs their code)")
    log_to: Annotated[list[StrictStr], BeforeValidator(one_or_many)] = Field(
        default_factory=list, description="experiment trackers: mlflow[:URI], tensorboard[:DIR], wandb[:PROJECT]"
    )
    engine: Literal["local", "ray"] = Field(default="local", description="local or ray")
    address: PathText | None = Field(default=None, description="address of an existing Ray cluster")

    @field_validator("groups", "map_groups", mode="before")
    @classmethod
    def _groups_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"expected a mapping of group name -> run-folder pattern (e.g. xent: 'runs/xent-*'), got {shown(value)}"
            )
        for name in value:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"group names must be non-empty text, got {name!r}")
        return dict(value)

    @field_validator("log_to", mode="after")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        from salience_audit.tracking.backends import parse_log_to

        for item in value:
            parse_log_to(item, error=ValueError)
        return value

    @model_validator(mode="after")
    def _some_group(self) -> AuditSettings:
        if not self.groups and not self.map_groups:
            raise ValueError("give at least one group (--group NAME=PATTERN or --map-group NAME=PATTERN)")
        return self

    @field_validator("splits", mode="after")
    @classmethod
    def _unique_splits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one split")
        return tuple(dict.fromkeys(value))


def validate_compute(values: Mapping[str, Any]) -> ComputeSettings:
    """Check :class:`AuditConfig` values (Python API); raises :class:`InputError` naming each bad key."""
    try:
        return ComputeSettings.model_validate(dict(values))
    except ValidationError as err:
        raise_problems(problems_of(err, set(), "AuditConfig.", ComputeSettings.model_fields))
        raise  # unreachable: _raise always raises for a non-empty error list


def settings_from_sources(
    config: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> AuditSettings:
    """Validate a config file's mapping and the given flags (flags win) as one :class:`AuditSettings`.

    ``flags`` holds only the flags the user gave (``None`` values are dropped). Raises
    :class:`InputError` listing every problem, each named by where it came from.
    """
    config = dict(config or {})
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    where_config = f"{config_path}: " if config_path is not None else "config: "
    problems: list[str] = []
    for key in sorted(COMMAND_LINE_ONLY & set(config)):
        problems.append(f"{where_config}{key}: allowed on the command line only ({flag_name(key)}), not in a config file")
        config.pop(key)
    merged = {**config, **given}
    try:
        settings = AuditSettings.model_validate(merged)
    except ValidationError as err:
        problems.extend(problems_of(err, set(given), where_config, AuditSettings.model_fields))
    for key in sorted(set(config) & set(given)):  # a config value overridden by a flag must still be valid
        try:
            AuditSettings.model_validate({**merged, key: config[key]})
        except ValidationError as err:
            problems.extend(
                p
                for p in problems_of(err, set(given) - {key}, where_config, AuditSettings.model_fields)
                if p.startswith(where_config + key)
            )
    raise_problems(problems)
    return settings
