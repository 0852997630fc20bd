"""Which model groups are salience-guided and which are plain, for the study's expected directions.

The original study compared plain cross-entropy models with models trained with human
salience guidance (CYBORG). A group is recognised as one or the other from its runs'
metadata (``loss``, ``family`` or ``alpha`` in ``audit.json``), else from its name
(e.g. ``cyborg`` / ``guided`` vs ``xent`` / ``ce`` / ``baseline``). Unrecognised groups get
no expected direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GUIDED = "guided"
PLAIN = "plain"

REFERENCE_GROUPS = frozenset({"human"})
"""Groups that are not models but a reference: the audit writes the human annotations' own
measures (e.g. their entropy) under group ``human``. They are shown beside the model groups
but get no family, no study direction and no significance test against the models."""

_GUIDED_WORDS = ("cyborg", "guided", "human", "saliency", "salience")
_PLAIN_WORDS = ("xent", "crossentropy", "cross_entropy", "cross-entropy", "plain", "baseline")
_PLAIN_TOKENS = ("ce", "base")


def _from_text(text: str) -> str | None:
    low = text.lower()
    if any(word in low for word in _GUIDED_WORDS):
        return GUIDED
    tokens = re.split(r"[^a-z0-9]+", low)
    if any(word in low for word in _PLAIN_WORDS) or any(tok in _PLAIN_TOKENS for tok in tokens):
        return PLAIN
    return None


def _from_run_meta(meta: Mapping[str, Any]) -> str | None:
    for key in ("family", "loss"):
        value = meta.get(key)
        if isinstance(value, str) and (found := _from_text(value)):
            return found
    alpha = meta.get("alpha")
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        return PLAIN if float(alpha) >= 1.0 else GUIDED
    return None


def infer_family(group: str, audit_meta: Mapping[str, Any] | None = None) -> str | None:
    """``"guided"``, ``"plain"`` or None for one model group (None for a reference group)."""
    if group in REFERENCE_GROUPS:
        return None
    runs = (audit_meta or {}).get("runs") or {}
    found = {
        fam
        for meta in runs.values()
        if isinstance(meta, Mapping) and meta.get("group") == group
        for fam in [_from_run_meta(meta)]
        if fam is not None
    }
    if len(found) == 1:
        return found.pop()
    return _from_text(group)


def group_families(groups: list[str], audit_meta: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """Family of every group."""
    return {g: infer_family(g, audit_meta) for g in groups}
