"""Verdicts: does a measure separate two model groups, in which direction, as the study found?

Rule (stated in every report): two groups are *separated* by a measure when the two-sided
Mann-Whitney U test on the per-image values gives p < 0.05 AND the bootstrap 95% CIs of the
two group means do not overlap. Both must hold, which is stricter than the test alone and
guards against tiny but "significant" differences on very large image sets. p-values are
not corrected for the number of comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from salience_audit.measures.base import Output
from salience_audit.report.formatting import is_number
from salience_audit.report.summary.families import GUIDED, PLAIN

ALPHA = 0.05

RULE = (
    "separated = two-sided Mann-Whitney U test on the per-image values p < 0.05 AND non-overlapping "
    "bootstrap 95% CIs of the two group means (not corrected for multiple comparisons)"
)


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool | None:
    vals = [a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high")]
    if not all(is_number(v) for v in vals):
        return None
    a_low, a_high, b_low, b_high = (float(v) for v in vals)
    return not (a_high < b_low or b_high < a_low)


def _relation(mean_a: float, mean_b: float, direction: str | None) -> str:
    """'lower', 'higher', 'closer to 0', 'farther from 0' or 'equal' (a relative to b)."""
    if direction == "zero":
        da, db = abs(mean_a), abs(mean_b)
        return "equal" if da == db else ("closer to 0" if da < db else "farther from 0")
    return "equal" if mean_a == mean_b else ("lower" if mean_a < mean_b else "higher")


def _better(relation: str, direction: str | None) -> bool | None:
    """Whether 'a is <relation> than b' means a is better (None when no direction)."""
    if direction is None or relation == "equal":
        return None
    if direction == "zero":
        return relation == "closer to 0"
    return relation == direction


def expected_relation(
    info: Output, group_a: str, group_b: str, families: Mapping[str, str | None]
) -> tuple[str | None, str | None]:
    """(expected text, expected relation of a to b) from the study, when one group is guided and one plain."""
    if info.study is None:
        return None, None
    fa, fb = families.get(group_a), families.get(group_b)
    if {fa, fb} != {GUIDED, PLAIN}:
        return None, None
    guided, plain = (group_a, group_b) if fa == GUIDED else (group_b, group_a)
    text = f"{guided} {info.study} than {plain}"
    if fa == GUIDED:
        return text, info.study
    return text, {"lower": "higher", "higher": "lower"}.get(info.study, info.study)


def verdict(
    info: Output,
    variant: str,
    comparison: Mapping[str, Any],
    stats_a: Mapping[str, Any],
    stats_b: Mapping[str, Any],
    families: Mapping[str, str | None],
) -> dict[str, Any]:
    """Verdict for one measure/variant compared between ``group_a`` and ``group_b`` of ``comparison``."""
    ga, gb = comparison["group_a"], comparison["group_b"]
    p = comparison.get("mannwhitney_p")
    mean_a, mean_b = stats_a.get("mean"), stats_b.get("mean")
    direction = info.direction(variant)
    overlap = _overlap(stats_a, stats_b)
    separates: bool | None
    if not is_number(p):
        separates = None
    else:
        separates = bool(p < ALPHA and overlap is False)
    relation = _relation(float(mean_a), float(mean_b), direction) if is_number(mean_a) and is_number(mean_b) else None
    a_better = _better(relation, direction) if relation else None
    better_group = None
    if separates and a_better is not None:
        better_group = ga if a_better else gb
    expected, expected_rel = expected_relation(info, ga, gb, families)
    if expected_rel is None or relation is None:
        study_check = None
    elif not separates:
        study_check = "not separated"
    else:
        study_check = "confirmed" if relation == expected_rel else "contradicted"
    return {
        "separates": separates,
        "rule": "p<0.05 and non-overlapping CIs",
        "ci_overlap": overlap,
        "p_below_alpha": bool(p < ALPHA) if is_number(p) else None,
        "direction": f"{ga} {relation} than {gb}" if relation and relation != "equal" else (
            "equal means" if relation == "equal" else None),
        "better_group": better_group,
        "expected": expected,
        "study_check": study_check,
    }
