"""Report: summary numbers, figures, self-contained HTML and Markdown, on a synthetic audit folder.

The synthetic audit has two groups x 5 runs: ``xent`` (plain) and ``<b>g</b>`` (guided, by
its runs' ``loss`` metadata), two in-set datasets x 20 images, a small out-of-set dataset,
and a gallery. The guided group has a known lower entropy and higher cross-run stability.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salience_audit.jsonsafe import json_safe
from salience_audit.report.formatting import fmt_ci, fmt_num, fmt_p
from salience_audit.report.render.html import write_report
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.build import load_results, summarize, write_summary

GUIDED = "<b>g</b>"
PLAIN = "xent"
GROUPS = {PLAIN: [f"xent_s{k}" for k in range(5)], GUIDED: [f"g_s{k}" for k in range(5)]}
DATASETS = {"stylegan2": ("in", 20), "progan": ("in", 20), "unseen": ("out-of-set", 8)}
NOISE = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
TRANSFORMS = ["identity", "flip_lr", "flip_tb"] + [
    f"shift({dx:+d},{dy:+d})" for dx, dy in itertools.product((-16, 0, 16), repeat=2) if (dx, dy) != (0, 0)
] + ["rot90_cw", "rot90_ccw"]
SCRIPT_NAME = "stylegan2/<script>.png"
ENTROPY_SHIFT = -0.15  # guided minus plain


def _image_paths(dataset: str, n: int) -> list[str]:
    paths = [f"{dataset}/img_{i:03d}.png" for i in range(n)]
    if dataset == "stylegan2":
        paths[0] = SCRIPT_NAME
    return paths


def build_synthetic_audit(out: Path, seed: int = 0, entropy_shift: float = ENTROPY_SHIFT) -> Path:
    """Write results/*.parquet, audit.json, gallery.npz and mean_maps.npz of a small synthetic audit."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []

    def add(ds, path, idx, label, group, run, measure, variant, value):
        rows.append(dict(dataset=ds, path=path, index=idx, label=label, group=group, run=run,
                         measure=measure, variant=variant, value=float(value)))

    for ds, (role, n) in DATASETS.items():
        paths = _image_paths(ds, n)
        labels = np.where(np.arange(n) % 2 == 0, 0, 1) if role == "in" else np.full(n, -1)
        image_effect = rng.normal(0, 0.04, n)
        for group, runs in GROUPS.items():
            guided = group == GUIDED
            for r, run in enumerate(runs):
                run_effect = rng.normal(0, 0.01)
                for i in range(n):
                    lab = int(labels[i])
                    base = dict(ds=ds, path=paths[i], idx=i, label=lab, group=group, run=run)
                    p_syn = np.clip((0.8 if lab == 1 else 0.2) + rng.normal(0, 0.15), 0.01, 0.99)
                    add(**base, measure="score", variant="", value=p_syn)
                    add(**base, measure="correct", variant="",
                        value=np.nan if lab < 0 else float((p_syn > 0.5) == (lab == 1)))
                    ent = 0.70 + (entropy_shift if guided else 0.0) + image_effect[i] + run_effect
                    ent += 0.1 if role != "in" else 0.0
                    add(**base, measure="entropy_norm", variant="", value=ent)
                    add(**base, measure="entropy", variant="", value=ent * math.log2(49))
                    add(**base, measure="spatial_entropy", variant="", value=0.9 + rng.normal(0, 0.02))
                    if ds == "stylegan2" and i < 10:
                        add(**base, measure="human_ssim", variant="", value=(0.5 if guided else 0.3) + rng.normal(0, .05))
                        add(**base, measure="human_spearman", variant="", value=(0.6 if guided else 0.4) + rng.normal(0, .05))
                    for a in NOISE:
                        v = f"a={a:g}"
                        add(**base, measure="noise_score", variant=v, value=np.clip(p_syn + 0.4 * a, 0, 1))
                        add(**base, measure="noise_correct", variant=v, value=np.nan if lab < 0 else float(a < 0.3))
                        add(**base, measure="noise_ssim", variant=v, value=1.0 - a * (0.5 if guided else 0.8))
                        add(**base, measure="noise_entropy", variant=v, value=ent + 0.2 * a)
                    add(**base, measure="noise_auc_score", variant="", value=p_syn + 0.2)
                    add(**base, measure="noise_auc_ssim", variant="", value=1 - (0.25 if guided else 0.4))
                    add(**base, measure="noise_auc_entropy", variant="", value=ent + 0.1)
                    for t in TRANSFORMS:
                        eq = 1.0 if t == "identity" else (0.8 if guided else 0.6) + rng.normal(0, 0.05)
                        add(**base, measure="equivariance", variant=t, value=eq)
                        add(**base, measure="invariance", variant=t, value=1.0 if t == "identity" else 0.5)
                        add(**base, measure="transform_score_change", variant=t,
                            value=0.0 if t == "identity" else rng.normal(0, 0.05))
                    for mode, drop in (("background", 0.05), ("object", 0.35 if guided else 0.2)):
                        sign = -1.0 if lab == 1 else 1.0
                        add(**base, measure="degrade_score_change", variant=mode, value=sign * drop)
                        add(**base, measure="degrade_correct", variant=mode,
                            value=np.nan if lab < 0 else float(rng.random() > drop))
                        add(**base, measure="degrade_ssim", variant=mode, value=0.7 if mode == "background" else 0.4)
                    add(**base, measure="deletion_auc", variant="", value=0.3 + rng.normal(0, 0.02))
                    add(**base, measure="insertion_auc", variant="", value=0.7 + rng.normal(0, 0.02))
                    add(**base, measure="deletion_auc_random", variant="", value=0.5)
                    add(**base, measure="insertion_auc_random", variant="", value=0.5)
            for ra, rb in itertools.combinations(runs, 2):
                for i in range(n):
                    base = dict(ds=ds, path=paths[i], idx=i, label=int(labels[i]), group=group, run=f"{ra}|{rb}")
                    stab = (0.75 if guided else 0.45) + rng.normal(0, 0.05)
                    add(**base, measure="stability_ssim", variant="", value=stab)
                    add(**base, measure="stability_spearman", variant="", value=stab + 0.1)
                    add(**base, measure="stability_iou", variant="", value=stab - 0.2)

    frame = pd.DataFrame(rows)
    (out / "results").mkdir(parents=True, exist_ok=True)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(out / "results" / "shard-000.parquet", index=False)
    frame.iloc[half:].to_parquet(out / "results" / "shard-001.parquet", index=False)

    runs_meta = {}
    for group, runs in GROUPS.items():
        for s, run in enumerate(runs):
            runs_meta[run] = {"group": group, "arch": "resnet50", "seed": s, "path": f"runs/{run}",
                              "val_acc": 0.95 - 0.004 * s - (0.02 if run == "xent_s2" else 0.0),
                              "loss": "cyborg" if group == GUIDED else "xent"}
    meta = {
        "version": "0.1.0", "created": "2024-01-01T00:00:00Z",
        "command": "salience-audit audit --runs runs/ --out OUT", "method": "gradcam",
        "measures": ["entropy", "noise", "transforms", "stability", "degradation", "human"],
        "groups": GROUPS, "runs": runs_meta,
        "datasets": {ds: {"n": n, "role": role} for ds, (role, n) in DATASETS.items()},
        "noise_levels": NOISE, "transform_variants": TRANSFORMS, "input_size": 64, "map_size": [7, 7],
        "rejected": 2,
    }
    (out / "audit.json").write_text(json.dumps(meta), encoding="utf-8")

    k, size = 3, 32
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.stack([np.stack([(xx * 8) % 256, (yy * 8) % 256, np.full_like(xx, 60 * j)], -1)
                       for j in range(k)]).astype(np.uint8)
    run_names = [r for runs in GROUPS.values() for r in runs]
    run_groups = [g for g, runs in GROUPS.items() for _ in runs]
    maps = rng.random((len(run_names), k, 7, 7)).astype(np.float32)
    np.savez_compressed(
        out / "gallery.npz", images=images,
        paths=np.array([SCRIPT_NAME, "progan/img_001.png", "stylegan2/img_002.png"]),
        datasets=np.array(["stylegan2", "progan", "stylegan2"]), labels=np.array([0, 1, 0]),
        reasons=np.array(["most stable", "least stable", "example"]), maps=maps,
        runs=np.array(run_names), run_groups=np.array(run_groups),
    )
    mean_maps = {f"{run}::{ds}": rng.random((7, 7)) for run in run_names for ds in DATASETS}
    np.savez_compressed(out / "mean_maps.npz", **mean_maps)
    return out


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """A synthetic audit with its report written, compared with a second synthetic audit."""
    root = tmp_path_factory.mktemp("report")
    out = build_synthetic_audit(root / "resnet" / "audit_a")
    other = build_synthetic_audit(root / "densenet" / "audit_b", seed=1, entropy_shift=-0.05)
    html_path = write_report(out, compare_with=other, n_boot=300)
    summary_text = (out / "summary.json").read_text(encoding="utf-8")
    return {
        "out": out,
        "other": other,
        "html_path": html_path,
        "html": html_path.read_text(encoding="utf-8"),
        "summary_text": summary_text,
        "summary": json.loads(summary_text),
    }


def _stat(summary, measure, variant, group, dataset):
    found = [r for r in summary["stats"] if (r["measure"], r["variant"], r["group"], r["dataset"])
             == (measure, variant, group, dataset)]
    assert len(found) == 1, (measure, variant, group, dataset)
    return found[0]


def _comparison(summary, measure, variant, dataset):
    found = [c for c in summary["comparisons"] if (c["measure"], c["variant"], c["dataset"]) == (measure, variant, dataset)]
    assert len(found) == 1
    return found[0]


def _walk_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


# ----------------------------------------------------------------------------- summary


def test_load_results_reads_every_shard(audit):
    rows = load_results(audit["out"])
    expected = sum(len(pd.read_parquet(p)) for p in (audit["out"] / "results").glob("*.parquet"))
    assert len(rows) == expected
    assert list(rows.columns) == ["dataset", "path", "index", "label", "group", "run", "measure", "variant", "value"]


def test_summary_is_strict_json_with_finite_numbers(audit):
    def reject(name):
        raise AssertionError(f"non-finite constant {name} in summary.json")

    parsed = json.loads(audit["summary_text"], parse_constant=reject)
    json.dumps(parsed, allow_nan=False)
    numbers = list(_walk_numbers(parsed))
    assert numbers and all(math.isfinite(x) for x in numbers)
    for key in ("stats", "per_run", "comparisons", "noise_curves", "stability_matrices", "detection", "findings",
                "selection", "out_of_set_entropy", "measures", "method"):
        assert parsed[key], key


def test_group_means_match_recomputation_from_rows(audit):
    summary = audit["summary"]
    rows = load_results(audit["out"])
    ent = rows[rows["measure"] == "entropy_norm"]
    per_image = ent.groupby(["group", "dataset", "index"])["value"].mean().reset_index()
    for group in GROUPS:
        for dataset in DATASETS:
            vals = per_image[(per_image["group"] == group) & (per_image["dataset"] == dataset)]["value"]
            rec = _stat(summary, "entropy_norm", "", group, dataset)
            assert rec["n"] == len(vals) == DATASETS[dataset][1]
            assert rec["mean"] == pytest.approx(vals.mean(), abs=1e-12)
            assert rec["std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
            assert rec["ci_low"] <= rec["mean"] <= rec["ci_high"]
            assert rec["n_runs"] == 5
        pooled = per_image[(per_image["group"] == group) & per_image["dataset"].isin(["stylegan2", "progan"])]
        rec = _stat(summary, "entropy_norm", "", group, POOLED)
        assert rec["n"] == 40 and rec["mean"] == pytest.approx(pooled["value"].mean(), abs=1e-12)


def test_per_run_and_stability_views_match_rows(audit):
    summary = audit["summary"]
    rows = load_results(audit["out"])
    run_rec = [r for r in summary["per_run"] if (r["measure"], r["run"], r["dataset"]) == ("entropy_norm", "g_s1", "progan")]
    expected = rows[(rows["measure"] == "entropy_norm") & (rows["run"] == "g_s1") & (rows["dataset"] == "progan")]
    assert run_rec[0]["mean"] == pytest.approx(expected["value"].mean(), abs=1e-12)
    # stability of one run = mean over images of its mean SSIM to the other runs of its group
    stab = rows[(rows["measure"] == "stability_ssim") & rows["run"].str.contains("xent_s1", regex=False)
                & rows["dataset"].isin(["stylegan2", "progan"])]
    per_image = stab.groupby(["dataset", "index"])["value"].mean()
    sel = {r["run"]: r for r in summary["selection"]["rows"]}
    assert sel["xent_s1"]["stability"] == pytest.approx(per_image.mean(), abs=1e-12)
    # N x N matrix: symmetric, unit diagonal, entries = mean over images of the pair
    mat = next(m for m in summary["stability_matrices"] if m["group"] == PLAIN and m["dataset"] == "progan")
    assert mat["runs"] == GROUPS[PLAIN]
    grid = np.array(mat["matrix"], dtype=float)
    assert np.allclose(np.diag(grid), 1.0) and np.allclose(grid, grid.T)
    pair = rows[(rows["measure"] == "stability_ssim") & (rows["run"] == "xent_s0|xent_s2") & (rows["dataset"] == "progan")]
    assert grid[0, 2] == pytest.approx(pair["value"].mean(), abs=1e-12)


def test_derived_aggregates(audit):
    summary = audit["summary"]
    rows = load_results(audit["out"])
    # transforms "all" = per-image mean over the 12 non-identity variants
    eq = rows[(rows["measure"] == "equivariance") & (rows["variant"] != "identity") & (rows["dataset"] == "progan")
              & (rows["group"] == GUIDED)]
    expected = eq.groupby(["index", "run"])["value"].mean().groupby("index").mean().mean()
    assert _stat(summary, "equivariance", "all", GUIDED, "progan")["mean"] == pytest.approx(expected, abs=1e-12)
    # accuracy change per mode = mean degrade_correct - mean correct
    sub = rows[(rows["dataset"] == "stylegan2") & (rows["group"] == PLAIN)]
    change = (sub[(sub["measure"] == "degrade_correct") & (sub["variant"] == "object")]["value"].mean()
              - sub[sub["measure"] == "correct"]["value"].mean())
    rec = _stat(summary, "degrade_accuracy_change", "object", PLAIN, "stylegan2")
    assert rec["mean"] == pytest.approx(change, abs=1e-12)
    # noise curve per level and the AUC of the mean curve
    curve = next(c for c in summary["noise_curves"] if (c["measure"], c["group"], c["dataset"])
                 == ("noise_ssim", GUIDED, POOLED))
    assert curve["amount"] == NOISE
    assert curve["mean"][-1] == pytest.approx(0.5) and curve["auc_of_mean_curve"] == pytest.approx(0.75)
    # detection per run and per group
    per_group = next(r for r in summary["detection"]["per_group"] if (r["group"], r["dataset"]) == (PLAIN, "progan"))
    accs = [r["accuracy"] for r in summary["detection"]["per_run"] if r["group"] == PLAIN and r["dataset"] == "progan"]
    assert len(accs) == 5 and per_group["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    # out-of-set comparison of entropy, per group
    oos = {r["group"]: r for r in summary["out_of_set_entropy"]}
    assert set(oos) == set(GROUPS) and all(r["dataset"] == "unseen" and r["mean_diff"] > 0 for r in oos.values())


def test_known_group_difference_is_detected_in_the_right_direction(audit):
    summary = audit["summary"]
    assert summary["families"] == {PLAIN: "plain", GUIDED: "guided"}
    for dataset in ("stylegan2", "progan", POOLED):
        cmp = _comparison(summary, "entropy_norm", "", dataset)
        assert (cmp["group_a"], cmp["group_b"]) == (PLAIN, GUIDED)
        assert cmp["mean_diff"] == pytest.approx(-ENTROPY_SHIFT, abs=0.03)
        assert cmp["mannwhitney_p"] < 0.001
        verdict = cmp["verdict"]
        # run level: 5 and 5 runs, exact permutation test, every split more extreme than none
        assert cmp["runs"]["exact"] and cmp["runs"]["p"] == pytest.approx(2 / 252)
        assert cmp["runs"]["p_adjusted"] >= cmp["runs"]["p"] and verdict["p_adjusted"] == cmp["runs"]["p_adjusted"]
        assert verdict["separates"] is True and verdict["enough_runs"] is True
        assert verdict["direction"] == f"{PLAIN} higher than {GUIDED}"
        assert verdict["better_group"] == GUIDED
        assert verdict["expected"] == f"{GUIDED} lower than {PLAIN}"
        assert verdict["study_check"] == "confirmed"
    stab = _comparison(summary, "stability_ssim", "", POOLED)["verdict"]
    assert stab["separates"] and stab["better_group"] == GUIDED and stab["study_check"] == "confirmed"
    # no built-in difference: not separated
    assert _comparison(summary, "spatial_entropy", "", POOLED)["verdict"]["separates"] is False
    finding = next(f for f in summary["findings"] if f["measure"] == "entropy_norm")
    assert finding["better"] == "lower" and finding["study_guided_vs_plain"] == "lower"
    assert finding["question"] == "How focused is the model?"


def test_family_numbers_match_a_recomputation_from_rows(audit):
    """Run x image CI from the runs x images table; run-level test on run means; BH over the report."""
    from scipy import stats as sps

    from salience_audit.stats.crossed import CrossedMoments, crossed_ci
    from salience_audit.stats.fdr import bh_adjust

    summary = audit["summary"]
    rows = load_results(audit["out"])
    ent = rows[(rows["measure"] == "entropy_norm") & (rows["dataset"] == "progan")]
    tables = {g: ent[ent["group"] == g].pivot(index="run", columns="index", values="value").to_numpy()
              for g in GROUPS}
    for group, table in tables.items():
        fam = _stat(summary, "entropy_norm", "", group, "progan")["family"]
        ref = crossed_ci(CrossedMoments.from_table(table))
        assert fam["n_runs"] == 5 and fam["n_images"] == 20
        assert fam["mean"] == pytest.approx(table.mean(), abs=1e-12)
        assert fam["ci_low"] == pytest.approx(float(ref["ci_low"]), rel=1e-9)
        assert fam["ci_high"] == pytest.approx(float(ref["ci_high"]), rel=1e-9)
        assert fam["ci_high"] - fam["ci_low"] > _stat(summary, "entropy_norm", "", group, "progan")["ci_high"] - \
            _stat(summary, "entropy_norm", "", group, "progan")["ci_low"]  # runs add variance
    runs = _comparison(summary, "entropy_norm", "", "progan")["runs"]
    a, b = tables[PLAIN].mean(axis=1), tables[GUIDED].mean(axis=1)
    ref = sps.permutation_test((a, b), lambda x, y: abs(np.mean(x) - np.mean(y)), permutation_type="independent",
                               n_resamples=np.inf, alternative="greater", vectorized=False)
    assert runs["p"] == pytest.approx(ref.pvalue) and runs["diff"] == pytest.approx(a.mean() - b.mean())
    assert runs["diff_ci_low"] < runs["diff"] < runs["diff_ci_high"] and runs["hedges_g"] > 3
    assert len(runs["leave_one_out"]) == 10 and runs["driven_by"] == []
    # BH over every run-level p of the report
    ps = [c["runs"]["p"] if c.get("runs") else None for c in summary["comparisons"]]
    adjusted = bh_adjust(ps)
    got = [c["runs"]["p_adjusted"] if c.get("runs") else None for c in summary["comparisons"]]
    np.testing.assert_allclose(np.array(got, dtype=float), adjusted, rtol=1e-12)
    assert summary["method"]["multiple_comparisons"]["m_run_level"] == int(np.isfinite(adjusted).sum())
    # stability: pairs through runs (jackknife)
    stab = _stat(summary, "stability_ssim", "", GUIDED, "progan")["family"]
    assert stab["n_runs"] == 5 and len(stab["run_values"]) == 10 and stab["ci_low"] < stab["mean"] < stab["ci_high"]


def test_selection_ranks_equally_accurate_runs(audit):
    sel = audit["summary"]["selection"]
    assert sel["accuracy_source"] == "validation" and "1 percentage point" in sel["rule"]
    rows = {r["run"]: r for r in sel["rows"]}
    assert rows["xent_s2"]["equally_accurate"] is False and rows["xent_s2"]["overall_rank"] is None
    ranked = sorted((r for r in sel["rows"] if r["overall_rank"] is not None), key=lambda r: r["overall_rank"])
    assert [r["overall_rank"] for r in ranked] == [1, 2, 3, 4, 5]
    assert {r["group"] for r in ranked[:3]} == {GUIDED}
    assert rows["g_s0"]["rank_accuracy"] == 1


def test_undefined_numbers_are_null_and_empty_figures_skipped(tmp_path):
    from salience_audit.report.render.figures import all_figures
    from salience_audit.report.summary.build import image_table

    rows = []
    for group in ("a", "b"):
        for run in (f"{group}1", f"{group}2"):
            for i in range(6):
                base = dict(dataset="sg3", path=f"x/{i}.png", index=i, label=1, group=group, run=run, variant="")
                rows.append({**base, "measure": "score", "value": 0.7})
                rows.append({**base, "measure": "entropy_norm", "value": 0.5})
    rows = pd.DataFrame(rows)
    meta = {"groups": {"a": ["a1", "a2"], "b": ["b1", "b2"]}, "datasets": {"sg3": {"n": 6, "role": "in"}}}
    summary = summarize(rows, meta, n_boot=50)
    json.dumps(summary, allow_nan=False)
    det = summary["detection"]["per_run"][0]
    assert det["roc_auc"] is None and det["bpcer"] is None and det["accuracy"] == 1.0
    cmp = _comparison(summary, "entropy_norm", "", "sg3")
    assert cmp["welch_p"] is None and cmp["verdict"]["separates"] in (False, None)
    figures = {f.name for f in all_figures(summary, image_table(rows, meta))}
    assert "entropy_distribution" in figures and "detection" in figures
    assert not figures & {"noise_curves", "transforms", "stability_matrix", "degradation", "gallery_1"}


def test_write_summary_writes_strict_json(tmp_path):
    rows = pd.DataFrame([dict(dataset="d", path=f"{i}.png", index=i, label=i % 2, group="g", run=r,
                              measure="entropy_norm", variant="", value=0.1 * i) for r in ("r1", "r2") for i in range(5)])
    (tmp_path / "results").mkdir()
    rows.to_parquet(tmp_path / "results" / "s0.parquet", index=False)
    (tmp_path / "results" / ".s1.parquet.tmp").write_bytes(b"partial")  # an unfinished shard is ignored
    path = write_summary(tmp_path, n_boot=50)
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert path == tmp_path / "summary.json"
    rec = _stat(summary, "entropy_norm", "", "g", "d")
    assert rec["n"] == 5 and rec["mean"] == pytest.approx(0.2)
    assert summary["comparisons"] == []  # one group: nothing to compare


def test_number_formatting_and_json_safety():
    assert fmt_ci(0.4123, 0.3981, 0.4269) == "0.412 [0.398, 0.427]"
    assert fmt_ci(-0.002, -0.004, -8.2e-05) == "-0.002 [-0.004, 0.000]"
    assert fmt_p(0.0031) == "p = 0.003" and fmt_p(0.0004) == "p < 0.001" and fmt_p(None) == "\u2013"
    assert fmt_num(float("nan")) == "\u2013" and fmt_num(-1e-5) == "-1e-05" and fmt_num(0.5) == "0.500"
    safe = json_safe({"a": np.float32(np.nan), "b": [np.inf, np.int64(3)], "c": (1.5, None)})
    assert safe == {"a": None, "b": [None, 3], "c": [1.5, None]}


# ----------------------------------------------------------------------------- HTML / Markdown


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data"):
                self.urls.append((tag, name, value or ""))
            if name == "id":
                self.ids.add(value)


def test_html_escapes_names_and_paths(audit):
    html = audit["html"]
    assert "<script" not in html.lower()
    assert "&lt;script&gt;.png" in html
    assert "&lt;b&gt;g&lt;/b&gt;" in html
    assert "<b>g</b>" not in html


def test_html_is_self_contained(audit):
    parser = _Collector()
    parser.feed(audit["html"])
    assert {"script", "link", "iframe", "object", "embed"}.isdisjoint(parser.tags)
    assert parser.urls
    for tag, attr, url in parser.urls:
        if attr == "href":
            assert url.startswith("#") and url[1:] in parser.ids, url
        else:
            assert url.startswith("data:image/png;base64,"), (tag, url[:40])
    assert "@import" not in audit["html"] and "url(" not in audit["html"]


def test_every_image_is_an_embedded_png(audit):
    parser = _Collector()
    parser.feed(audit["html"])
    images = [url for tag, attr, url in parser.urls if tag == "img"]
    assert len(images) >= 10
    for url in images:
        data = base64.b64decode(url.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_sections_and_markdown(audit):
    html = audit["html"]
    for anchor in ("overview", "detection", "entropy", "noise", "transforms", "stability", "degradation", "human",
                   "gallery", "selection", "comparison", "metadata"):
        assert f'id="{anchor}"' in html, anchor
    assert "0.992 [0.975, 1.000]" in html or re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", html)
    assert "p &lt; 0.001" in html
    md = (audit["out"] / "report" / "report.md").read_text(encoding="utf-8")
    assert "<script" not in md and "&lt;script&gt;.png" in md
    figures = re.findall(r"!\[[^\]]*\]\((figures/[a-z0-9_]+\.png)\)", md)
    assert len(figures) >= 10
    for rel in figures:
        assert (audit["out"] / "report" / rel).read_bytes()[:4] == b"\x89PNG"


def test_comparison_section_labels_both_audits(audit):
    html = audit["html"]
    assert "Comparison: audit_a vs audit_b" in html
    assert "audit_a: mean [95% CI]" in html and "audit_b: mean [95% CI]" in html
    from salience_audit.report.document.content import build_document

    doc = build_document(audit["summary"], [])
    assert "comparison" not in {s.anchor for s in doc.sections}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(audit, tmp_path):
    shot = tmp_path / "report.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot}", "--window-size=1280,2000", audit["html_path"].resolve().as_uri()]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000


def test_write_report_reuses_an_up_to_date_summary(audit):
    from salience_audit.report.summary.build import load_fresh_summary

    assert load_fresh_summary(audit["out"], n_boot=300, seed=0) is not None
    assert load_fresh_summary(audit["out"], n_boot=2000) is None  # other settings: recompute
    shard = next((audit["out"] / "results").glob("*.parquet"))
    summary_mtime = (audit["out"] / "summary.json").stat().st_mtime
    os.utime(shard, (summary_mtime + 10, summary_mtime + 10))  # results newer than the summary
    try:
        assert load_fresh_summary(audit["out"], n_boot=300, seed=0) is None
    finally:
        os.utime(shard, (summary_mtime - 10, summary_mtime - 10))


def test_a_difference_resting_on_one_run_is_flagged():
    """4 vs 4 runs; one guided run far below the others carries the whole difference."""
    run_means = {"g_s0": 0.5, "g_s1": 0.9, "g_s2": 0.9, "g_s3": 0.9,
                 "xent_s0": 0.91, "xent_s1": 0.92, "xent_s2": 0.93, "xent_s3": 0.94}
    rng = np.random.default_rng(0)
    image_effect = rng.normal(0, 0.01, 30)
    rows = pd.DataFrame([
        dict(dataset="faces", path=f"i{i}.png", index=i, label=i % 2, group=run.split("_")[0], run=run,
             measure="entropy_norm", variant="", value=mean + image_effect[i])
        for run, mean in run_means.items() for i in range(30)
    ])
    meta = {"groups": {"g": [r for r in run_means if r.startswith("g_")],
                       "xent": [r for r in run_means if r.startswith("xent")]},
            "runs": {r: {"group": r.split("_")[0], "loss": "cyborg" if r.startswith("g_") else "xent"}
                     for r in run_means}}
    summary = summarize(rows, meta, n_boot=200)
    cmp = _comparison(summary, "entropy_norm", "", "faces")
    assert cmp["runs"]["p"] == pytest.approx(2 / 70)  # the guided runs are the 4 lowest: the most extreme split
    verdict = cmp["verdict"]
    assert verdict["separates"] is True and verdict["driven_by_one_run"] == ["g_s0"]
    assert "driven by one run (g_s0)" in verdict["label"]
    without = next(r for r in cmp["runs"]["leave_one_out"] if r["run"] == "g_s0")
    assert (cmp["group_a"], cmp["runs"]["diff"]) == ("g", pytest.approx(0.8 - 0.925, abs=1e-9))
    assert without["diff"] == pytest.approx(0.9 - 0.925, abs=1e-9)  # a fifth of the difference is left
