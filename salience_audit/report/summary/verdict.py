"""Verdicts: does a measure separate two model FAMILIES, in which direction, as the study found?

Rule (stated in every report): two groups are *separated* by a measure when the run-level
test (permutation of run labels on the mean run values; stability: jackknife t over runs
and images, see :mod:`salience_audit.report.summary.runlevel`) gives a Benjamini-Hochberg adjusted
p < 0.05 across all comparisons of the report, and each group has at least ``min_runs``
runs (default 3). With fewer runs the verdict is "not enough runs to compare families
(n = 2 and 2)" and the numbers are still shown. A verdict against the original study
("confirmed" / "contradicted") needs the same. A comparison whose difference flips or
halves when one run is left out is flagged as driven by that run.

The image-level view (Mann-Whitney U on the per-image values, BH-adjusted as its own
family) answers a different question - do THESE trained runs differ on these images - and
is reported under ``images``, labelled "for these trained runs".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from salience_audit.measures.base import Output
from salience_audit.report.formatting import fmt_p, is_number
from salience_audit.report.summary.families import GUIDED, PLAIN
from salience_audit.stats.runtests import MIN_RUNS

ALPHA = 0.05


def rule_text(min_runs: int = MIN_RUNS, n_tests: int | None = None) -> str:
    """The verdict rule in words."""
    m = f" over the {n_tests} run-level comparisons of this report" if n_tests is not None else ""
    return (
        "separated = run-level test (permutation of run labels; stability: jackknife t over runs and images) with "
        f"Benjamini-Hochberg adjusted p < {ALPHA:g}{m}, and at least {min_runs} runs per group; otherwise 'not "
        "enough runs to compare families'. 'confirmed' / 'contradicted' compares a separated difference with the "
        "original study. Image-level tests (Mann-Whitney U, also BH-adjusted) describe these trained runs only."
    )


RULE = rule_text()


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


def _better_of(relation: str | None, direction: str | None, ga: str, gb: str) -> str | None:
    a_better = _better(relation, direction) if relation else None
    return None if a_better is None else (ga if a_better else gb)


def not_enough_runs(n_a: int, n_b: int) -> str:
    return f"not enough runs to compare families (n = {n_a} and {n_b})"


def verdict(
    info: Output,
    variant: str,
    comparison: Mapping[str, Any],
    stats_a: Mapping[str, Any],
    stats_b: Mapping[str, Any],
    families: Mapping[str, str | None],
    min_runs: int = MIN_RUNS,
) -> dict[str, Any]:
    """Verdict for one measure/variant compared between ``group_a`` and ``group_b`` of ``comparison``.

    ``comparison["runs"]`` holds the run-level test with ``p_adjusted``; ``stats_a`` /
    ``stats_b`` the groups' records with their ``family`` (run x image) means.
    """
    ga, gb = comparison["group_a"], comparison["group_b"]
    runs = comparison.get("runs") or {}
    n_a, n_b = int(runs.get("n_runs_a") or 0), int(runs.get("n_runs_b") or 0)
    fam_a, fam_b = stats_a.get("family") or {}, stats_b.get("family") or {}
    mean_a = fam_a.get("mean", stats_a.get("mean"))
    mean_b = fam_b.get("mean", stats_b.get("mean"))
    direction = info.direction(variant)
    relation = _relation(float(mean_a), float(mean_b), direction) if is_number(mean_a) and is_number(mean_b) else None
    p_adj = runs.get("p_adjusted")
    enough = n_a >= min_runs and n_b >= min_runs
    separates: bool | None
    if not enough or not is_number(p_adj):
        separates = None
    else:
        separates = bool(p_adj < ALPHA) and relation not in (None, "equal")
    better_group = _better_of(relation, direction, ga, gb) if separates else None
    expected, expected_rel = expected_relation(info, ga, gb, families)
    driven = list(runs.get("driven_by") or [])
    if expected_rel is None or relation is None or not runs:
        study_check = None
    elif not enough:
        study_check = "not enough runs"
    elif separates is None:
        study_check = None
    elif not separates:
        study_check = "not separated"
    else:
        study_check = "confirmed" if relation == expected_rel else "contradicted"
    if not runs:
        label = "no run-level statistics for this measure"
    elif not enough:
        label = not_enough_runs(n_a, n_b)
    elif separates is None:
        label = "no run-level test"
    elif separates:
        label = f"{better_group} better" if better_group else f"{ga} {relation} than {gb}"
        label += f" (adjusted {fmt_p(p_adj)})"
    else:
        label = f"no family difference (adjusted {fmt_p(p_adj)})"
        floor = runs.get("min_p")
        if is_number(floor) and floor >= ALPHA:
            label += f"; with {n_a} and {n_b} runs no p below {floor:.3f} is possible"
    if driven and separates:
        label += f"; driven by one run ({', '.join(driven)})"
    img_p = comparison.get("mannwhitney_p_adjusted")
    img_sep = bool(img_p < ALPHA) if is_number(img_p) else None
    return {
        "separates": separates,
        "enough_runs": enough,
        "n_runs": [n_a, n_b],
        "min_runs": min_runs,
        "p_adjusted": p_adj if is_number(p_adj) else None,
        "rule": f"run-level BH-adjusted p < {ALPHA:g} and >= {min_runs} runs per group",
        "direction": f"{ga} {relation} than {gb}" if relation and relation != "equal" else (
            "equal means" if relation == "equal" else None),
        "better_group": better_group,
        "expected": expected,
        "study_check": study_check,
        "driven_by_one_run": driven if separates or study_check in ("confirmed", "contradicted") else [],
        "label": label,
        "images": {
            "scope": "for these trained runs",
            "separates": img_sep,
            "p_adjusted": img_p if is_number(img_p) else None,
            "better_group": _better_of(_relation(float(stats_a["mean"]), float(stats_b["mean"]), direction), direction,
                                       ga, gb) if img_sep and is_number(stats_a.get("mean"))
            and is_number(stats_b.get("mean")) else None,
        },
    }
