"""What each row measure means, read from the measures themselves (no table of its own).

Titles, questions, units, better directions and the study's findings are attributes of
the registered measures (:mod:`salience_audit.measures`). A measure registered in another
process (e.g. a user measure audited by a script, reported later from the command line)
is described by the ``measure_info`` / ``measure_sections`` that the audit wrote into
``audit.json``; :func:`remember` loads them. A measure nobody describes gets a generic
description and goes to the report's "Other measures" section.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salience_audit.measures import registry
from salience_audit.measures.base import Output

REPORT_SECTIONS: tuple[str, ...] = ("detection", "entropy", "noise", "transforms", "stability", "degradation", "human")
"""The built-in report sections, in report order (a user measure's section follows them)."""


@dataclass(frozen=True)
class SectionText:
    """Heading text of one report section: a measure's title, question and introduction."""

    key: str
    title: str
    question: str
    intro: str


_REMEMBERED_OUTPUTS: dict[str, Output] = {}
_REMEMBERED_SECTIONS: dict[str, SectionText] = {}


def remember(audit_meta: Mapping[str, Any] | None) -> None:
    """Descriptions written into ``audit.json`` by the audit, for measures this process has not registered."""
    meta = audit_meta or {}
    for name, data in (meta.get("measure_info") or {}).items():
        if registry.output_info(name) is None and isinstance(data, Mapping):
            _REMEMBERED_OUTPUTS[name] = Output.from_dict(name, data)
    for key, data in (meta.get("measure_sections") or {}).items():
        if key not in registry.names() and isinstance(data, Mapping):
            _REMEMBERED_SECTIONS[key] = SectionText(key, str(data.get("title", key)), str(data.get("question", "")),
                                                    str(data.get("intro", "")))


def known(name: str) -> bool:
    """Whether a measure describes the row measure ``name``."""
    return registry.output_info(name) is not None or name in _REMEMBERED_OUTPUTS


def info(name: str) -> Output:
    """The description of the row measure ``name``; a generic one when no measure describes it."""
    out = registry.output_info(name) or _REMEMBERED_OUTPUTS.get(name)
    if out is not None:
        return out
    return Output(name, name, f"Values of the measure '{name}'.", "value", "other")


def _section_rank(key: str) -> tuple[int, int]:
    if key in REPORT_SECTIONS:
        return (0, REPORT_SECTIONS.index(key))
    order = list(registry.names()) + list(_REMEMBERED_SECTIONS)
    return (1, order.index(key) if key in order else len(order))


def described_outputs() -> list[Output]:
    """Every described row measure, in report order (by section, then as each measure lists them)."""
    outs = registry.outputs() + [o for o in _REMEMBERED_OUTPUTS.values() if registry.output_info(o.name) is None]
    return sorted(outs, key=lambda o: _section_rank(o.section))


def section(key: str) -> SectionText | None:
    """The heading text of section ``key`` (the measure of that name), None for unknown keys."""
    if key in registry.names():
        m = registry.get(key)
        return SectionText(key, m.title, m.question, m.intro)
    return _REMEMBERED_SECTIONS.get(key)


def extra_sections() -> list[str]:
    """Sections of measures beyond the built-in ones (user measures), in registry order."""
    keys = {o.section for o in described_outputs()} - set(REPORT_SECTIONS)
    return sorted(keys, key=_section_rank)


def is_pairwise(name: str) -> bool:
    """Whether the rows of ``name`` are per pair of runs (``run`` = ``"runA|runB"``)."""
    return info(name).pairwise


def pairwise_measures() -> tuple[str, ...]:
    """Names of the described row measures whose rows are per pair of runs (stability's, and a user's)."""
    return tuple(o.name for o in described_outputs() if o.pairwise)


def measure_table() -> dict[str, dict[str, object]]:
    """JSON-ready description of every described measure (``summary.json`` key ``measures``)."""
    return {o.name: o.to_dict() for o in described_outputs()}
