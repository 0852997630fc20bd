"""The numbers of an audit: ``summarize(rows, audit_meta)`` and ``OUT/summary.json``.

How the numbers are made (also written into the summary under ``"method"``):

- Per group, dataset, measure and variant, each IMAGE's value is first averaged over the
  group's runs (stability rows: over the group's pairs of runs); n is the number of images,
  and the 95% CI is a percentile bootstrap of the mean over images (2000 resamples).
- The rows are read one shard at a time into fixed-size aggregates
  (:mod:`salience_audit.report.summary.accumulate`): with more than ``capacity`` images (default
  50,000) in a cell, n, mean and std stay exact, the CI is the normal one
  (mean +- 1.96 sd / sqrt(n)) and the tests use a uniform sample of ``capacity`` images
  (Welch from the exact moments); such cells are listed under ``method.approximated``.
- Per run: the mean and standard deviation over images of the run's own values (pairwise
  stability rows count for both runs of the pair: mean SSIM of the run to the others).
- Family level (:mod:`salience_audit.report.summary.runlevel`, docs/statistics.md): per group a
  run x image mean and CI (``family``); two groups compared at the level of runs
  (permutation of run labels; stability: jackknife t), with the difference's CI, Hedges' g
  and a leave-one-run-out check (``runs``); all run-level p-values Benjamini-Hochberg
  adjusted together. Verdicts use the adjusted run-level p and need ``min_runs`` runs per
  group (see :mod:`salience_audit.report.summary.verdict`).
- Image level ("for these trained runs"): two groups are also compared on the per-image
  values (Mann-Whitney U, Welch t, Cliff's delta; Mann-Whitney p BH-adjusted as its own family).
- Detection metrics per run and dataset; per group, their mean with a bootstrap CI over runs.
- Undefined numbers (an AUC with one class, a p-value of constants) are ``null``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salience_audit import __version__
from salience_audit.atomic import atomic_write_text
from salience_audit.jsonsafe import json_safe
from salience_audit.measures.decision import SCORE
from salience_audit.profiles import profile_of
from salience_audit.report.summary import aggregate, curves, detection, outofset, selection
from salience_audit.report.summary.accumulate import (
    DEFAULT_CAPACITY,
    AuditAccumulator,
    accumulate_results,
    dataset_role,
)
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.derived import derive_rows
from salience_audit.report.summary.describe import (
    described_outputs,
    info,
    known,
    measure_table,
    pairwise_measures,
    remember,
)
from salience_audit.report.summary.families import group_families
from salience_audit.report.summary.runlevel import add_family_level, family_inputs
from salience_audit.report.summary.verdict import MIN_RUNS, rule_text, verdict
from salience_audit.results.reader import (
    load_audit_meta,
    load_mean_maps,
    load_results,
    normalize_rows,
    shard_coverage,
)

__all__ = [
    "DEFAULT_CAPACITY", "POOLED", "dataset_roles", "folder_accumulator", "image_table", "load_fresh_summary",
    "load_results", "save_summary", "summarize", "summarize_folder", "summary_from_accumulator", "write_summary",
]

SCHEMA_VERSION = 2
_FINDING_KEYS = ("group_a", "group_b", "mannwhitney_p", "mannwhitney_p_adjusted", "welch_p", "cliffs_delta", "mean_diff",
                 "runs", "verdict")


def _names(rows_or_names: pd.DataFrame | Iterable[str], column: str) -> set[str]:
    if isinstance(rows_or_names, pd.DataFrame):
        return {str(v) for v in rows_or_names[column].unique()}
    return {str(v) for v in rows_or_names}


def dataset_roles(datasets: pd.DataFrame | Iterable[str], audit_meta: Mapping[str, Any]) -> dict[str, str]:
    """``{dataset: "in" | "out-of-set"}`` in audit order; datasets missing from the metadata are in-set.

    ``datasets``: the dataset names found in the results (or the rows themselves).
    """
    roles = {str(name): dataset_role(audit_meta, str(name)) for name in (audit_meta.get("datasets") or {})}
    for name in sorted(_names(datasets, "dataset") - set(roles)):
        roles[name] = "in"
    return roles


def group_order(groups: pd.DataFrame | Iterable[str], audit_meta: Mapping[str, Any]) -> list[str]:
    """Groups in the order of ``audit.json``, then any others alphabetically (``groups``: those found, or the rows)."""
    listed = [str(g) for g in (audit_meta.get("groups") or {})]
    present = _names(groups, "group")
    return [g for g in listed if g in present] + sorted(present - set(listed))


def image_table(rows: pd.DataFrame, audit_meta: Mapping[str, Any]) -> pd.DataFrame:
    """Per-image group values (mean over the group's runs) of measured and derived rows, with the pooled copy."""
    rows = normalize_rows(rows)
    roles = dataset_roles(rows, audit_meta)
    in_set = [d for d, r in roles.items() if r == "in"]
    values = aggregate.image_values([rows, derive_rows(rows)], unit="group")
    return aggregate.with_pooled(values, in_set)


def _dataset_count(audit_meta: Mapping[str, Any], dataset: str) -> int:
    meta = (audit_meta.get("datasets") or {}).get(dataset)
    n = meta.get("n") if isinstance(meta, Mapping) else None
    return int(n) if isinstance(n, (int, float)) and n > 0 else 1


def _headline_dataset(in_set: Sequence[str], present: set[str]) -> str | None:
    found = [d for d in in_set if d in present]
    if len(found) >= 2:
        return POOLED
    return found[0] if found else None


def _stats_index(stats: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    return {(r["measure"], r["variant"], r["group"], r["dataset"]): r for r in stats}


def _add_verdicts(
    comparisons: list[dict[str, Any]], stats: Sequence[Mapping[str, Any]], families: Mapping[str, str | None],
    min_runs: int = MIN_RUNS,
) -> None:
    index = _stats_index(stats)
    for cmp in comparisons:
        key = (cmp["measure"], cmp["variant"])
        sa = index.get((*key, cmp["group_a"], cmp["dataset"]), {})
        sb = index.get((*key, cmp["group_b"], cmp["dataset"]), {})
        cmp["verdict"] = verdict(info(cmp["measure"]), cmp["variant"], cmp, sa, sb, families, min_runs)


def _findings(
    stats: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Mapping[str, Any]],
    groups: Sequence[str],
    dataset: str | None,
) -> list[dict[str, Any]]:
    """Headline rows: each measure's headline variant(s) on the headline dataset, per group and compared."""
    if dataset is None:
        return []
    index = _stats_index(stats)
    present = {(r["measure"], r["variant"]) for r in stats if r["dataset"] == dataset}
    described = [o.name for o in described_outputs() if o.name != SCORE]
    unknown = sorted({m for m, _ in present} - set(described) - {SCORE})
    out = []
    for measure in described + unknown:
        minfo = info(measure)
        variants = minfo.headline_variants if known(measure) else ("",)
        for variant in variants:
            if (measure, variant) not in present:
                continue
            per_group = {}
            for g in groups:
                rec = index.get((measure, variant, g, dataset))
                if rec:
                    per_group[g] = {k: rec.get(k) for k in ("n", "mean", "ci_low", "ci_high", "n_runs", "family")}
            cmps = [
                {k: c[k] for k in _FINDING_KEYS}
                for c in comparisons
                if c["measure"] == measure and c["variant"] == variant and c["dataset"] == dataset
            ]
            out.append(
                {
                    "measure": measure,
                    "variant": variant,
                    "section": minfo.section,
                    "primary": minfo.primary,
                    "title": minfo.title,
                    "question": minfo.question,
                    "better": minfo.direction(variant),
                    "study_guided_vs_plain": minfo.study,
                    "dataset": dataset,
                    "per_group": per_group,
                    "comparisons": cmps,
                }
            )
    return out


def _audit_block(audit_meta: Mapping[str, Any], roles: Mapping[str, str], acc: AuditAccumulator) -> dict[str, Any]:
    datasets = {}
    meta_ds = audit_meta.get("datasets") or {}
    for name, role in roles.items():
        meta = meta_ds.get(name) if isinstance(meta_ds.get(name), Mapping) else {}
        n_rows = acc.n_images(name)
        datasets[name] = {"role": role, "n": meta.get("n", n_rows), "n_in_results": n_rows}
    keep = ("version", "created", "command", "method", "measures", "groups", "runs", "noise_levels",
            "transform_variants", "input_size", "map_size", "rejected", "compare_with", "skipped_measures",
            "incomplete")
    block = {k: audit_meta[k] for k in keep if k in audit_meta}
    block["profile"] = profile_of(audit_meta)
    block["datasets"] = datasets
    return block


def min_runs_of(audit_meta: Mapping[str, Any], min_runs: int | None) -> int:
    """Runs per group a family verdict needs: ``min_runs`` if given, else ``min_runs`` of the audit config, else 3."""
    if min_runs is None:
        min_runs = (audit_meta.get("config") or {}).get("min_runs", MIN_RUNS)
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 2:
        raise ValueError(f"min_runs must be an integer >= 2, got {min_runs!r}")
    return min_runs


def _threshold(audit_meta: Mapping[str, Any], threshold: float | None) -> float:
    """The audit's decision threshold (``--threshold``, 0.5 by default) unless given."""
    if threshold is not None:
        return float(threshold)
    return float((audit_meta.get("config") or {}).get("threshold", 0.5))


def summarize(
    rows: pd.DataFrame,
    audit_meta: Mapping[str, Any] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    mean_maps: Mapping[str, np.ndarray] | None = None,
    threshold: float | None = None,
    capacity: int | None = None,
    min_runs: int | None = None,
) -> dict[str, Any]:
    """All numbers of an audit, from rows already in memory, as a JSON-ready dict (strict JSON: undefined numbers are None).

    The rows go through the same aggregates as :func:`write_summary` (one chunk); with the
    default ``capacity=None`` every value is kept, so every number is exact.

    Keys: ``schema``, ``generated``, ``tool_version``, ``method`` (how the numbers are made),
    ``audit`` (metadata), ``groups``, ``families``, ``datasets``, ``in_set``, ``out_of_set``,
    ``headline_dataset``, ``measures`` (question / unit / better direction / study direction),
    ``stats`` (per measure, variant, group, dataset: n, mean, std, ci_low, ci_high, n_runs),
    ``per_run`` (per measure, variant, run, dataset: n, mean, std), ``comparisons`` (per
    measure, variant, dataset and pair of groups: compare_groups + ``verdict``),
    ``noise_curves``, ``stability_matrices``, ``detection`` ({"per_run", "per_group"}),
    ``out_of_set_entropy``, ``mean_map_shift``, ``findings`` (headline rows) and
    ``selection`` (model-selection table).
    """
    audit_meta = dict(audit_meta or {})
    acc = AuditAccumulator(audit_meta, threshold=_threshold(audit_meta, threshold), capacity=capacity, seed=seed)
    acc.add(normalize_rows(rows))
    return summary_from_accumulator(acc, audit_meta, n_boot=n_boot, seed=seed, mean_maps=mean_maps, min_runs=min_runs)


def summary_from_accumulator(
    acc: AuditAccumulator,
    audit_meta: Mapping[str, Any] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    mean_maps: Mapping[str, np.ndarray] | None = None,
    min_runs: int | None = None,
) -> dict[str, Any]:
    """The summary dict (see :func:`summarize`) of rows folded into ``acc``."""
    audit_meta = dict(audit_meta or {})
    remember(audit_meta)
    min_runs = min_runs_of(audit_meta, min_runs)
    roles = dataset_roles(acc.datasets, audit_meta)
    in_set = [d for d, r in roles.items() if r == "in"]
    out_of_set = [d for d, r in roles.items() if r != "in"]
    groups = group_order(acc.groups, audit_meta)
    families = group_families(groups, audit_meta)

    stats = acc.group_stats(in_set, n_boot, seed)
    comparisons = acc.group_comparisons(in_set, groups)
    n_tests = add_family_level(stats, comparisons, family_inputs(acc, in_set, pairwise_measures()), pairwise_measures(),
                               seed)
    _add_verdicts(comparisons, stats, families, min_runs)
    per_run = acc.run_stats(in_set)

    det_runs = acc.detection_per_run(in_set)
    det_groups = detection.detection_per_group(det_runs, n_boot, seed)

    headline = _headline_dataset(in_set, {r["dataset"] for r in stats} | {r["dataset"] for r in det_runs})
    run_groups = selection.run_groups(per_run, audit_meta)
    counts = {d: _dataset_count(audit_meta, d) for d in roles}
    capacity = acc.capacity

    summary = {
        "schema": SCHEMA_VERSION,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "method": {
            "unit": "runs x images (family); images (for these trained runs)",
            "family_ci": (
                "stats[].family: mean of run means -+ t_nu * SE, SE^2 = two-way (runs x images) bootstrap variance "
                "in closed form with run-level small-sample correction, nu = Welch-Satterthwaite (runs: R - 1, "
                "images: I - 1); pairwise measures: mean over run pairs, delete-one-run jackknife + image variance"
            ),
            "family_tests": (
                "comparisons[].runs: exact (<= 200,000 relabellings) or Monte Carlo (20,000) permutation test of run "
                "labels on the difference of the mean run means; pairwise measures: Welch-type t on the jackknife "
                "variances; difference CI, Hedges' g of the run means, leave-one-run-out"
            ),
            "multiple_comparisons": {
                "method": "Benjamini-Hochberg (scipy.stats.false_discovery_control)",
                "m_run_level": n_tests["runs"],
                "m_image_level": n_tests["images"],
                "note": "verdicts use the adjusted run-level p-values; image-level p-values adjusted as a family of "
                        "their own",
            },
            "min_runs": min_runs,
            "per_image": "each image's value is the mean over the group's runs (stability: over the group's run pairs)",
            "ci": f"stats[].ci_low/ci_high (for these trained runs): percentile bootstrap 95% CI of the mean over "
                  f"images ({n_boot} resamples, seed {seed})",
            "n_boot": n_boot,
            "seed": seed,
            "per_run": "mean and standard deviation over images of the run's own values",
            "tests": "image level (for these trained runs): two-sided Mann-Whitney U and Welch t-test on the "
                     "per-image values; Cliff's delta",
            "verdict_rule": rule_text(min_runs, n_tests["runs"]),
            "pooled_dataset": POOLED,
            "detection_threshold": acc.threshold,
            "sample_capacity": capacity,
            "large_n": (
                "cells with more than sample_capacity images: n, mean and std exact (running moments); "
                "95% CI = mean +- 1.959964 * std / sqrt(n) (normal); Welch t-test from the exact moments; "
                "Mann-Whitney U, Cliff's delta, Kolmogorov-Smirnov and Wasserstein on a uniform sample "
                "(reservoir) of sample_capacity images; detection accuracy / APCER / BPCER exact, ROC-AUC on "
                "uniform samples of sample_capacity scores per class"
            ),
            "approximated": {"stats": acc.approximated(in_set), "detection": acc.detection_sampled(in_set)},
        },
        "audit": _audit_block(audit_meta, roles, acc),
        "groups": groups,
        "families": families,
        "datasets": list(roles),
        "in_set": in_set,
        "out_of_set": out_of_set,
        "headline_dataset": headline,
        "measures": measure_table(),
        "stats": stats,
        "per_run": per_run,
        "comparisons": comparisons,
        "noise_curves": curves.noise_curves(stats),
        "stability_matrices": curves.stability_matrices(acc.stability_pair_means(in_set),
                                                        audit_meta.get("groups") or {}),
        "detection": {"per_run": det_runs, "per_group": det_groups},
        "out_of_set_entropy": acc.entropy_shift(in_set, out_of_set, groups),
        "mean_map_shift": outofset.mean_map_shift(mean_maps, run_groups, in_set, out_of_set, counts),
        "findings": _findings(stats, comparisons, groups, headline),
        "selection": selection.selection_table(per_run, det_runs, audit_meta, headline or "")
        if headline
        else {"rows": []},
    }
    return json_safe(summary)


def folder_accumulator(
    out_dir: str | Path,
    audit_meta: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    capacity: int | None = DEFAULT_CAPACITY,
    threshold: float | None = None,
    measures: Sequence[str] | None = None,
) -> AuditAccumulator:
    """The rows of ``OUT/results`` folded shard by shard into an :class:`AuditAccumulator` (bounded memory)."""
    audit_meta = load_audit_meta(out_dir) if audit_meta is None else dict(audit_meta)
    return accumulate_results(out_dir, audit_meta, threshold=_threshold(audit_meta, threshold), capacity=capacity,
                              seed=seed, measures=measures)


def summarize_folder(
    out_dir: str | Path, *, n_boot: int = 2000, seed: int = 0, capacity: int | None = DEFAULT_CAPACITY,
    min_runs: int | None = None,
) -> dict[str, Any]:
    """The summary dict of the audit in ``out_dir``, computed in bounded memory (see :func:`write_summary`)."""
    out_dir = Path(out_dir)
    meta = load_audit_meta(out_dir)
    coverage = shard_coverage(out_dir)
    if coverage is not None and coverage["missing"]:  # said in the report, not only on the terminal
        meta = {**meta, "incomplete": {"images": coverage["images"], "of": coverage["of"],
                                       "missing_shards": len(coverage["missing"])}}
    acc = folder_accumulator(out_dir, meta, seed=seed, capacity=capacity)
    return summary_from_accumulator(acc, meta, n_boot=n_boot, seed=seed, mean_maps=load_mean_maps(out_dir),
                                    min_runs=min_runs)


def write_summary(
    out_dir: str | Path, *, n_boot: int = 2000, seed: int = 0, capacity: int | None = DEFAULT_CAPACITY,
    min_runs: int | None = None,
) -> Path:
    """Summarise the audit in ``out_dir`` and write ``OUT/summary.json`` (strict JSON); returns its path.

    The result shards are read one at a time: memory holds one shard (in chunks of whole
    images) and fixed-size aggregates, at most ``capacity`` values per (measure, variant,
    group, dataset) - not the rows of the whole audit.
    """
    out_dir = Path(out_dir)
    summary = summarize_folder(out_dir, n_boot=n_boot, seed=seed, capacity=capacity, min_runs=min_runs)
    return save_summary(summary, out_dir / "summary.json")


def _inputs_mtime(out_dir: Path) -> float:
    inputs = [*(out_dir / "results").glob("*.parquet"), out_dir / "audit.json", out_dir / "mean_maps.npz"]
    return max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)


def load_fresh_summary(
    out_dir: str | Path, n_boot: int | None = None, seed: int | None = None, capacity: int | None = None,
    min_runs: int | None = None,
) -> dict[str, Any] | None:
    """``OUT/summary.json`` if it is up to date, else None.

    Up to date: newer than the result shards, ``audit.json`` and ``mean_maps.npz``, written
    by this version of the tool and, when given, with the same ``n_boot``, ``seed`` and
    sample ``capacity``.
    """
    path = Path(out_dir) / "summary.json"
    if not path.is_file() or path.stat().st_mtime < _inputs_mtime(Path(out_dir)):
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    method = summary.get("method") or {}
    if summary.get("schema") != SCHEMA_VERSION or summary.get("tool_version") != __version__:
        return None
    if (n_boot is not None and method.get("n_boot") != n_boot) or (seed is not None and method.get("seed") != seed):
        return None
    if capacity is not None and method.get("sample_capacity") != capacity:
        return None
    if min_runs is not None and method.get("min_runs") != min_runs:
        return None
    return summary


def save_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write a summary dict as strict JSON (temporary file then rename)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return path
