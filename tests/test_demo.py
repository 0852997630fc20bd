"""The main job: `salience-audit demo --quick` separates the two model families as designed."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from fixtures_demo import quick_demo  # noqa: F401  (session fixture)

HEADLINE = "demo-test"


def _stat(summary: dict, measure: str, group: str, dataset: str = HEADLINE, variant: str = "") -> dict:
    for entry in summary["stats"]:
        if (entry["measure"], entry["variant"], entry["group"], entry["dataset"]) == (measure, variant, group, dataset):
            return entry
    raise AssertionError(f"no summary entry for {measure}/{variant}/{group}/{dataset}")


def test_guided_runs_are_more_stable_with_separate_cis(quick_demo):  # noqa: F811
    summary = json.loads((quick_demo / "audit" / "summary.json").read_text())
    guided = _stat(summary, "stability_ssim", "cyborg")
    plain = _stat(summary, "stability_ssim", "xent")
    assert guided["mean"] > plain["mean"]
    assert guided["ci_low"] > plain["ci_high"], (guided, plain)  # non-overlapping 95% CIs
    # and both families really learned the task (chance is 0.5)
    for group in ("xent", "cyborg"):
        assert _stat(summary, "correct", group)["mean"] > 0.65


def _walk_numbers(obj, path="$"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_summary_is_finite_and_matches_the_parquet_rows(quick_demo):  # noqa: F811
    audit = quick_demo / "audit"
    text = (audit / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"non-finite {c}")))
    numbers = list(_walk_numbers(summary))
    assert numbers and all(math.isfinite(v) for _, v in numbers)

    rows = pd.read_parquet(audit / "results")
    checked = 0
    for entry in summary["stats"]:
        sel = rows[
            (rows["measure"] == entry["measure"])
            & (rows["variant"] == entry["variant"])
            & (rows["group"] == entry["group"])
            & (rows["dataset"] == entry["dataset"])
        ]
        if sel.empty:  # derived aggregates (e.g. transforms 'all') are checked in the report tests
            continue
        per_image = sel.groupby("index")["value"].mean().dropna()
        assert entry["n"] == len(per_image), entry
        if entry["n"] == 0:  # e.g. correctness on unlabelled out-of-set images: undefined, written as null
            assert entry["mean"] is None, entry
            continue
        assert np.isclose(entry["mean"], per_image.mean(), rtol=1e-9, atol=1e-12), entry
        assert entry["ci_low"] <= entry["mean"] + 1e-12 <= entry["ci_high"] + 2e-12, entry
        checked += 1
    assert checked > 50


def test_demo_report_exists_and_states_the_study_directions(quick_demo):  # noqa: F811
    html = (quick_demo / "audit" / "report" / "index.html").read_text()
    for section in ("Salience entropy", "Stability", "Gallery", "Model selection", "Original study"):
        assert section in html, section
    assert (quick_demo / "audit" / "report" / "report.md").exists()
    runs = sorted(p.name for p in (quick_demo / "runs").iterdir())
    assert len([r for r in runs if "xent" in r]) == len([r for r in runs if "cyborg" in r]) >= 3
