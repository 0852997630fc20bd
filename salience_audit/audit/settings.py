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

import math
import re
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
)

from salience_audit.audit.config import DEFAULT_MEASURES, DEFAULT_NOISE_LEVELS, MEASURES, AuditConfig
from salience_audit.errors import InputError

SPLITS: tuple[str, ...] = ("test", "audit", "train")
"""Manifest splits; ``train`` rows are left out of an audit unless ``splits`` asks for them."""

DEFAULT_SPLITS: tuple[str, ...] = ("test", "audit")

COMMAND_LINE_ONLY: frozenset[str] = frozenset({"force", "trust_pickle"})
"""Settings refused in a config file: a reused file must not silently weaken a check."""

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _finite_number(value: Any) -> Any:
    """Numbers must be real numbers (not strings, not bools) and finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {_shown(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"expected a finite number, got {value}")
    return float(value)


def _comma_list(value: Any) -> Any:
    """A comma-separated string (the flag form) or a list of strings (the config form)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _one_or_many(value: Any) -> Any:
    """A single path string is a list of one path (never iterated character by character)."""
    if isinstance(value, str):
        return [value]
    return value


Count = Annotated[StrictInt, Field(ge=1)]
Probability = Annotated[float, BeforeValidator(_finite_number), Field(ge=0.0, le=1.0)]
PathText = Annotated[StrictStr, Field(min_length=1)]


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else f"{text} ({type(value).__name__})"


class ComputeSettings(BaseModel):
    """How the measures are computed: the fields of :class:`AuditConfig`, typed and range-checked.

    :class:`AuditConfig` validates itself through this model, so the Python API and the
    command line share one set of rules.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: StrictStr = Field(default="gradcam", description="salience method")
    measures: Annotated[tuple[StrictStr, ...], BeforeValidator(_comma_list)] = Field(
        default=DEFAULT_MEASURES, description="measures to compute, or 'all'"
    )
    target: Literal["predicted", "label"] = "predicted"
    batch_size: Count = 32
    shard_size: Count = 1024
    device: StrictStr = "auto"
    num_workers: Annotated[StrictInt, Field(ge=0)] = 0
    amp: StrictBool = False
    channels_last: StrictBool = False
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] = 0
    noise_levels: tuple[Probability, ...] = Field(default=DEFAULT_NOISE_LEVELS, min_length=1)
    deletion_steps: Count = 10
    on_bad_image: Literal["stop", "skip"] = "stop"
    gallery_size: Annotated[StrictInt, Field(ge=0)] = 3
    threshold: Probability = 0.5

    @field_validator("measures", mode="after")
    @classmethod
    def _known_measures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value == ("all",):
            return MEASURES
        if not value:
            raise ValueError("give at least one measure")
        unknown = [m for m in value if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: {', '.join(MEASURES)}, all")
        return tuple(dict.fromkeys(value))

    @field_validator("method", mode="after")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from salience_audit.salience.extract import METHODS

        if value not in METHODS:
            raise ValueError(f"unknown salience method {value!r}; known: {', '.join(METHODS)}")
        return value

    @field_validator("device", mode="after")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"expected auto, cpu, mps, cuda or cuda:N, got {value!r}")
        return value

    def audit_config(self) -> AuditConfig:
        """The computation settings as the :class:`AuditConfig` the engines and workers take."""
        return AuditConfig(**{key: getattr(self, key) for key in ComputeSettings.model_fields})


class AuditSettings(ComputeSettings):
    """Everything an ``audit`` is told: what to audit, where to write, and how to compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # what to audit and where the results go
    groups: dict[str, PathText] = Field(description="group name -> glob of run folders")
    manifests: Annotated[list[PathText], BeforeValidator(_one_or_many), Field(min_length=1)] = Field(
        description="test datasets: manifest CSVs or class-per-folder directories ([NAME=]PATH)"
    )
    ood_manifests: Annotated[list[PathText], BeforeValidator(_one_or_many)] = Field(
        default_factory=list, description="out-of-set datasets ([NAME=]PATH)"
    )
    root: PathText | None = Field(default=None, description="dataset root joined to manifest paths")
    human_maps: PathText | None = Field(default=None, description="folder of human annotation maps")
    out: PathText = Field(default="audit-output", description="output folder")
    compare_with: PathText | None = Field(default=None, description="another audit folder to compare with")
    splits: Annotated[tuple[Literal["test", "audit", "train"], ...], BeforeValidator(_comma_list)] = Field(
        default=DEFAULT_SPLITS, description="manifest splits audited (train rows are skipped by default)"
    )
    allow_unfinished: StrictBool = Field(default=False, description="audit runs whose training did not finish")
    force: StrictBool = Field(default=False, description="write into a non-empty folder that is not an audit folder")
    trust_pickle: StrictBool = Field(default=False, description="accept pickled whole models (runs their code)")
    engine: Literal["local", "ray"] = Field(default="local", description="local or ray")
    address: PathText | None = Field(default=None, description="address of an existing Ray cluster")

    @field_validator("groups", mode="before")
    @classmethod
    def _groups_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"expected a mapping of group name -> run-folder pattern (e.g. xent: 'runs/xent-*'), got {_shown(value)}"
            )
        if not value:
            raise ValueError("give at least one group (NAME=PATTERN)")
        for name in value:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"group names must be non-empty text, got {name!r}")
        return dict(value)

    @field_validator("splits", mode="after")
    @classmethod
    def _unique_splits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one split")
        return tuple(dict.fromkeys(value))


class ScoreSettings(BaseModel):
    """The numeric flags of ``score`` (the same rules as an audit's)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    batch_size: Count = 64
    num_workers: Annotated[StrictInt, Field(ge=0)] = 0
    threshold: Probability = 0.5
    device: StrictStr = "auto"

    _device_name = field_validator("device", mode="after")(ComputeSettings._device_name.__func__)


def check_flags(model: type[BaseModel], flags: Mapping[str, Any]) -> BaseModel:
    """Validate command-line flags with ``model``; raises :class:`InputError` naming each bad flag."""
    try:
        return model.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as err:
        _raise(_problems(err, set(flags), ""))
        raise


def flag_name(key: str) -> str:
    """The command-line spelling of a settings key (``batch_size`` -> ``--batch-size``)."""
    return "--" + key.replace("_", "-")


def _message(err: dict[str, Any]) -> str:
    """One pydantic error as plain words (``msg`` without pydantic's own prefixes)."""
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    kind = err.get("type", "")
    if kind not in ("value_error", "missing", "extra_forbidden") and "input" in err:
        msg += f", got {_shown(err['input'])}"
    msg = msg.replace("a valid tuple", "a list").replace("a valid list", "a list").replace("a valid dictionary", "a mapping")
    msg = msg.replace(" after validation, not 0", "")
    return msg[:1].lower() + msg[1:]


def _problems(err: ValidationError, flags: set[str], where_config: str) -> list[str]:
    """Each validation error as ``<where>: <problem>``, ``<where>`` the flag or the config key."""
    problems: list[str] = []
    for e in err.errors(include_url=False):
        loc = e.get("loc") or ()
        key = str(loc[0]) if loc else ""
        rest = "".join(f"[{p!r}]" for p in loc[1:])
        if e.get("type") == "missing":
            problems.append(f"missing {flag_name(key)} (or '{key}' in the config file)")
        elif e.get("type") == "extra_forbidden":
            known = ", ".join(sorted(AuditSettings.model_fields))
            problems.append(f"{where_config}unknown setting {key!r}; known settings: {known}")
        else:
            where = f"{flag_name(key)}{rest}" if key in flags else f"{where_config}{key}{rest}"
            problems.append(f"{where}: {_message(e)}")
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} bad settings:\n  " + "\n  ".join(problems)
        raise InputError(head)


def validate_compute(values: Mapping[str, Any]) -> ComputeSettings:
    """Check :class:`AuditConfig` values (Python API); raises :class:`InputError` naming each bad key."""
    try:
        return ComputeSettings.model_validate(dict(values))
    except ValidationError as err:
        _raise(_problems(err, set(), "AuditConfig."))
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
        problems.extend(_problems(err, set(given), where_config))
    for key in sorted(set(config) & set(given)):  # a config value overridden by a flag must still be valid
        try:
            AuditSettings.model_validate({**merged, key: config[key]})
        except ValidationError as err:
            problems.extend(p for p in _problems(err, set(given) - {key}, where_config) if p.startswith(where_config + key))
    _raise(problems)
    return settings
