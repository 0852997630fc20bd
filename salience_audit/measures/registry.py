"""The registered measures, in the order the batch loop runs them.

The built-in measures are registered when :mod:`salience_audit.measures` is imported, in
this order: detection, entropy, human, noise, transforms, degradation, deletion,
stability (the order of the rows in a shard and of the random draws of a batch). A user
measure registered with :func:`register` runs after them whenever an audit names it in its
measures; its outputs' titles, directions and findings reach ``audit.json``,
``summary.json`` and the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from salience_audit.measures.base import Measure, Output

_REGISTRY: dict[str, Measure] = {}


def register(measure: Measure | type[Measure], *, replace: bool = False) -> Measure:
    """Add a measure (an instance, or a class that is instantiated without arguments); returns the instance.

    Refused when the name is taken (unless ``replace``) or when one of its outputs' names
    is already written by another measure.
    """
    instance = measure() if isinstance(measure, type) else measure
    if not isinstance(instance, Measure):
        raise TypeError(f"register() needs a Measure subclass or instance, got {type(instance).__name__}")
    name = instance.name
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a measure needs a name of letters, digits, '_' or '-', got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"a measure named {name!r} is already registered (pass replace=True to replace it)")
    taken = {o.name: m.name for m in _REGISTRY.values() if m.name != name for o in m.outputs}
    clash = [o.name for o in instance.outputs if o.name in taken]
    if clash:
        raise ValueError(f"measure {name!r}: output(s) {clash} are already written by {sorted({taken[c] for c in clash})}")
    _REGISTRY[name] = instance
    return instance


def unregister(name: str) -> None:
    """Remove a registered measure (no error when absent)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Measure:
    """The registered measure called ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown measure {name!r}; registered: {list(_REGISTRY)}") from None


def registered() -> list[Measure]:
    """Every registered measure, in run order."""
    return list(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """Names of the registered measures, in run order."""
    return tuple(_REGISTRY)


def selected(names_: Iterable[str]) -> list[Measure]:
    """The measures an audit computes: those named (in registry order) plus the ``always`` ones."""
    wanted = set(names_)
    unknown = sorted(wanted - set(_REGISTRY))
    if unknown:
        raise KeyError(f"unknown measure(s) {unknown}; registered: {list(_REGISTRY)}")
    return [m for m in _REGISTRY.values() if m.always or m.name in wanted]


def descriptions(names_: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``audit.json`` keys ``measure_info`` (every output) and ``measure_sections`` of the measures an audit computes.

    They let a later process (``salience-audit report``) describe a user measure it has not registered.
    """
    measures = selected(names_)
    return {
        "measure_info": {o.name: o.to_dict() for m in measures for o in m.outputs},
        "measure_sections": {m.name: {"title": m.title, "question": m.question, "intro": m.intro,
                                      "finding": m.finding} for m in measures},
    }


def output_info(name: str) -> Output | None:
    """The :class:`Output` that writes (or derives) the row measure ``name``, None when no measure does."""
    for m in _REGISTRY.values():
        for out in m.outputs:
            if out.name == name:
                return out
    return None


def outputs() -> list[Output]:
    """Every registered measure's outputs, in run order."""
    return [o for m in _REGISTRY.values() for o in m.outputs]


def section_of(key: str) -> Measure | None:
    """The measure that owns the report section ``key`` (its outputs' ``section``), None when none does."""
    if key in _REGISTRY:
        return _REGISTRY[key]
    return None
