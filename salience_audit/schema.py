"""Typed values shared by every command's settings, and plain-words messages for bad ones.

The building blocks of the settings schemas (pydantic): counts (integers >= 1), finite
probabilities in [0, 1], non-empty path strings, device names; the forms users write
(``"a,b"`` for a list on a flag, one string for a list of one); and the translation of a
pydantic ``ValidationError`` into one :class:`~salience_audit.errors.InputError` whose
lines name the flag (``--batch-size``) or the config key (``c.yaml: batch_size``) at fault.
The audit's schema is :mod:`salience_audit.audit.settings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StrictInt, StrictStr, ValidationError

from salience_audit.errors import InputError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def finite_number(value: Any) -> Any:
    """Numbers must be real numbers (not strings, not bools) and finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {shown(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"expected a finite number, got {value}")
    return float(value)


def comma_list(value: Any) -> Any:
    """A comma-separated string (the flag form) or a list of strings (the config form)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def one_or_many(value: Any) -> Any:
    """A single path string is a list of one path (never iterated character by character)."""
    if isinstance(value, str):
        return [value]
    return value


def _device_name(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError(f"expected auto, cpu, mps, cuda or cuda:N, got {value!r}")
    return value


Count = Annotated[StrictInt, Field(ge=1)]
NonNegative = Annotated[StrictInt, Field(ge=0)]
DeviceName = Annotated[StrictStr, AfterValidator(_device_name)]
Probability = Annotated[float, BeforeValidator(finite_number), Field(ge=0.0, le=1.0)]
PathText = Annotated[StrictStr, Field(min_length=1)]


def shown(value: Any) -> str:
    """A value as a message shows it: its repr (cut at 60 characters) and its type."""
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else f"{text} ({type(value).__name__})"


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
        msg += f", got {shown(err['input'])}"
    msg = msg.replace("a valid tuple", "a list").replace("a valid list", "a list").replace("a valid dictionary", "a mapping")
    msg = msg.replace(" after validation, not 0", "")
    return msg[:1].lower() + msg[1:]


def problems_of(err: ValidationError, flags: set[str], where_config: str, known: Iterable[str]) -> list[str]:
    """Each validation error as ``<where>: <problem>``, ``<where>`` the flag or the config key."""
    problems: list[str] = []
    for e in err.errors(include_url=False):
        loc = e.get("loc") or ()
        key = str(loc[0]) if loc else ""
        rest = "".join(f"[{p!r}]" for p in loc[1:])
        if e.get("type") == "missing":
            problems.append(f"missing {flag_name(key)} (or '{key}' in the config file)")
        elif e.get("type") == "extra_forbidden":
            known_keys = ", ".join(sorted(known))
            problems.append(f"{where_config}unknown setting {key!r}; known settings: {known_keys}")
        elif not loc:  # a check of several settings together (a model validator): no one key to name
            where = where_config.rstrip(" .:")
            problems.append(f"{where}: {_message(e)}" if where else _message(e))
        else:
            where = f"{flag_name(key)}{rest}" if key in flags else f"{where_config}{key}{rest}"
            problems.append(f"{where}: {_message(e)}")
    return problems


def raise_problems(problems: list[str]) -> None:
    """Raise one :class:`InputError` listing ``problems`` (nothing when empty)."""
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} bad settings:\n  " + "\n  ".join(problems)
        raise InputError(head)




def check_flags(model: type[BaseModel], flags: Mapping[str, Any]) -> BaseModel:
    """Validate command-line flags with ``model``; raises :class:`InputError` naming each bad flag."""
    try:
        return model.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as err:
        raise_problems(problems_of(err, set(flags), "", model.model_fields))
        raise
