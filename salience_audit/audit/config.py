"""Settings of an audit, from flags or a YAML / TOML config file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from salience_audit.errors import InputError
from salience_audit.measures import registry
from salience_audit.perturb.noise import NOISE_LEVELS
from salience_audit.profiles import DEFAULT_PROFILE
from salience_audit.stats.runtests import MIN_RUNS

MEASURES: tuple[str, ...] = ("entropy", "noise", "transforms", "stability", "degradation", "deletion", "human")
"""The built-in measures an audit can compute (detection, score and correctness, is always computed).
A measure registered with :func:`salience_audit.measures.register` may be named too."""

def selectable_measures() -> tuple[str, ...]:
    """Names an audit may be asked for: the built-in :data:`MEASURES`, then any other registered measure.

    Detection (score, correctness) is always computed and is not named.
    """
    extra = tuple(m for m in registry.names() if m not in MEASURES and not registry.get(m).always)
    return (*MEASURES, *extra)


DEFAULT_MEASURES: tuple[str, ...] = ("entropy", "noise", "transforms", "stability", "degradation", "human")
"""Deletion / insertion curves cost ~40 extra forward passes per image and are opt-in."""

DEFAULT_NOISE_LEVELS: tuple[float, ...] = NOISE_LEVELS


@dataclass
class AuditConfig:
    """How an audit is computed.

    Attributes:
        method: salience method (``gradcam`` as in the published measures, ``cam``, ...).
        salience_path: ``auto`` (forward-only maps where the head is global average pooling +
            linear, verified against autograd on each run's first batch), ``forward`` (forced)
            or ``autograd`` (a backward pass per map); see ``salience.forward``.
        measures: which measures to compute (see :data:`MEASURES`).
        target: ``predicted`` (argmax of the logits) or ``label`` (the true class).
        batch_size: images per model pass, or ``"auto"``: on CUDA the largest batch that fits
            the device memory (measured by trial passes), on CPU :data:`CPU_AUTO_BATCH`.
        shard_size: images per result shard (unit of resume and of distribution).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ...
        num_workers: DataLoader worker processes.
        amp: mixed-precision model passes (``device.amp_dtype``: bfloat16 on the CPU and on GPUs
            that support it, else float16); maps, logits and every measure stay float32 / float64.
        channels_last: channels-last memory format for models and image batches (any device).
        seed: seed of the noise; the same seed gives the same noisy images.
        noise_levels: salt-and-pepper amounts.
        deletion_steps: fractions in the deletion / insertion curves (steps + 1 points).
        on_bad_image: ``stop`` (default) or ``skip`` (write ``rejected.csv`` and go on).
        gallery_size: example images per dataset in the report gallery.
        threshold: decision threshold on the "Synthetic" probability: an image is called
            Synthetic when its score is above it (accuracy, APCER, BPCER, ACER, correctness).
        profile: ``default`` (corrected definitions) or ``study`` (the original study's
            conventions, bit for bit where its code is deterministic; docs/fidelity.md).
        min_runs: runs per group a verdict about model families (and a check against the
            original study) needs; with fewer the report says "not enough runs".
    """

    method: str = "gradcam"
    salience_path: str = "auto"
    measures: tuple[str, ...] = DEFAULT_MEASURES
    target: str = "predicted"
    batch_size: int | str = 32
    shard_size: int = 1024
    device: str = "auto"
    num_workers: int = 0
    amp: bool = False
    channels_last: bool = False
    seed: int = 0
    noise_levels: tuple[float, ...] = DEFAULT_NOISE_LEVELS
    deletion_steps: int = 10
    on_bad_image: str = "stop"
    gallery_size: int = 3
    threshold: float = 0.5
    profile: str = DEFAULT_PROFILE
    min_runs: int = MIN_RUNS
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from salience_audit.audit.settings import validate_compute

        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        checked = validate_compute(values)
        for key in values:
            object.__setattr__(self, key, getattr(checked, key))
        if 0.0 not in self.noise_levels:
            self.noise_levels = (0.0, *self.noise_levels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["measures"] = list(self.measures)
        d["noise_levels"] = list(self.noise_levels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> AuditConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown audit setting(s) {unknown}; known: {sorted(known)}", source)
        try:
            return cls(**data)
        except InputError as err:  # name the config file the bad value came from
            if err.path is None and source is not None:
                raise InputError(err.problem, source) from err
            raise


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})", key_node.start_mark
                    )
                seen[key] = line
            except TypeError:  # an unhashable key: let the normal constructor report it
                break
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file safely into a dict.

    YAML is read with ``yaml.safe_load`` (no object construction); TOML with ``tomllib``.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise InputError("config file is not a regular file (a folder, pipe or device)", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise InputError(f"cannot read config file: {err.strerror or err}", path) from err
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            try:
                data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
            except yaml.constructor.ConstructorError as err:
                mark = err.problem_mark
                if "given twice" in str(err.problem):
                    raise InputError(str(err.problem), path, None if mark is None else mark.line + 1) from err
                raise InputError(
                    f"refused: {err.problem}; config files may hold plain data only (they are read with "
                    "yaml.safe_load, which never builds Python objects)",
                    path,
                    None if mark is None else mark.line + 1,
                ) from err
        else:
            raise InputError("config file must end in .yaml, .yml or .toml", path)
    except InputError:
        raise
    except Exception as err:  # parser errors carry line numbers in their text
        raise InputError(f"cannot parse config file: {err}", path) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("config file must hold a mapping of settings at the top level", path)
    return data
