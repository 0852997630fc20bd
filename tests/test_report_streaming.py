"""The summary in bounded memory: shard-by-shard aggregates equal the in-memory numbers, and stay small.

- A real audit (two groups x two one-epoch runs, 34 shards of 5 images, every measure):
  ``write_summary`` (streamed, also in chunks of a few hundred rows) gives the same JSON
  as ``summarize`` of all rows at once, and its numbers match an independent pandas /
  numpy recomputation.
- A synthetic audit of 3 groups x 3 runs x 3000 images with a sample capacity of 50: n,
  mean and std stay exact, the CI is the normal one, the tests still find the planted
  difference (and none between identical groups).
- The aggregates hold no more numbers for 4x the images.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_audit import audit_setup  # noqa: F401  (session fixture)
from streaming_fixtures import write_synthetic_audit

from salience_audit.cli import main
from salience_audit.errors import EXIT_BAD_INPUT
from salience_audit.report.summary.accumulate import Z95, AuditAccumulator, accumulate_results
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.build import (
    load_fresh_summary,
    load_results,
    summarize,
    summarize_folder,
    summary_from_accumulator,
    write_summary,
)
from salience_audit.results.reader import (
    chunk_bounds,
    iter_result_chunks,
    load_audit_meta,
    load_mean_maps,
    plan_units,
    result_files,
)
from salience_audit.results.schema import ROW_SCHEMA, rows_table
from salience_audit.stats.bootstrap import bootstrap_ci
from salience_audit.stats.samples import IndexRanges, ValueSample

N_BOOT = 200
MOMENT_PATHS = ("per_run", "stability_matrices", "selection")
"""Summary parts made from running moments: equal to the in-memory numbers up to rounding (~1e-15)."""
FAMILY_KEYS = ("family", "runs", "verdict", "multiple_comparisons")
"""Family-level parts (per-run moments merged chunk by chunk): equal up to rounding, 1e-9 relative."""


def _assert_same(a, b, path="", rel=0.0):
    """Same structure, order, strings and ints; floats equal (within ``rel`` relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}", max(rel, 1e-9) if k in FAMILY_KEYS else rel)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == b or abs(a - b) <= rel * max(abs(a), abs(b), 1e-300), (path, a, b)
    else:
        assert a == b and type(a) is type(b), (path, a, b)


def _assert_summaries_equal(streamed, in_memory):
    """Everything identical except the moment-based parts, which agree to 1e-12 relative."""
    assert streamed.keys() == in_memory.keys()
    for key in streamed:
        if key == "generated":
            continue
        a, b = streamed[key], in_memory[key]
        if key == "method":  # the capacity may differ (None: every value kept)
            a, b = ({k: v for k, v in m.items() if k != "sample_capacity"} for m in (a, b))
        _assert_same(a, b, key, rel=1e-12 if key in MOMENT_PATHS else 0.0)


# ----------------------------------------------------------------------------- a real audit


@pytest.fixture(scope="module")
def real_audit(audit_setup, tmp_path_factory):  # noqa: F811
    """Every measure, shards of 5 images in batches of 4, two in-set datasets and an out-of-set one."""
    out = tmp_path_factory.mktemp("streaming") / "audit"
    argv = [
        "audit", *audit_setup.group_flags(),
        "--manifest", f"faces={audit_setup.manifest}", "--manifest", f"faces2={audit_setup.manifest}",
        "--ood-manifest", f"nonfaces={audit_setup.ood_manifest}",
        "--measures", "all", "--batch-size", "4", "--shard-size", "5", "--device", "cpu",
        "--out", str(out), "--quiet", "--no-report",
    ]
    assert main(argv) == 0
    rows = load_results(out)
    meta = load_audit_meta(out)
    in_memory = summarize(rows, meta, n_boot=N_BOOT, mean_maps=load_mean_maps(out))
    streamed = json.loads(write_summary(out, n_boot=N_BOOT).read_text(encoding="utf-8"))
    return {"out": out, "rows": rows, "meta": meta, "in_memory": in_memory, "streamed": streamed}


def test_streamed_summary_equals_in_memory_summary(real_audit):
    out = real_audit["out"]
    assert len(result_files(out)) == 34 and all(len(u) == 1 for u in plan_units(result_files(out)))
    _assert_summaries_equal(real_audit["streamed"], real_audit["in_memory"])
    # chunks of ~200 rows (cut between batches of images) change nothing either
    meta = real_audit["meta"]
    assert sum(1 for _ in iter_result_chunks(out, chunk_rows=200)) > 34
    acc = accumulate_results(out, meta, chunk_rows=200)
    chunked = summary_from_accumulator(acc, meta, n_boot=N_BOOT, mean_maps=load_mean_maps(out))
    _assert_summaries_equal(json.loads(json.dumps(chunked)), real_audit["in_memory"])
    method = real_audit["streamed"]["method"]
    assert method["sample_capacity"] == 50_000 and method["approximated"] == {"stats": [], "detection": []}
    assert load_fresh_summary(out, n_boot=N_BOOT, seed=0, capacity=50_000) is not None
    assert load_fresh_summary(out, n_boot=N_BOOT, seed=0, capacity=10) is None


def _per_image(rows: pd.DataFrame, measure: str, variant: str = "") -> pd.DataFrame:
    sel = rows[(rows["measure"] == measure) & (rows["variant"] == variant)]
    return sel.groupby(["group", "dataset", "index"], sort=False)["value"].mean().reset_index()


def test_streamed_numbers_match_a_recomputation(real_audit):
    rows, summary = real_audit["rows"], real_audit["streamed"]
    stats = {(r["measure"], r["variant"], r["group"], r["dataset"]): r for r in summary["stats"]}
    in_set = ["faces", "faces2"]
    for measure in ("entropy_norm", "stability_ssim", "noise_auc_ssim"):
        per_image = _per_image(rows, measure)
        for (group, dataset), sub in per_image.groupby(["group", "dataset"], sort=False):
            vals = sub["value"].to_numpy()
            rec = stats[(measure, "", group, dataset)]
            mean, low, high = bootstrap_ci(vals, n_boot=N_BOOT, seed=0)
            assert (rec["n"], rec["mean"], rec["ci_low"], rec["ci_high"]) == (vals.size, mean, low, high)
            assert rec["std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
            runs = rows[(rows["measure"] == measure) & (rows["group"] == group) & (rows["dataset"] == dataset)]
            assert rec["n_runs"] == runs["run"].nunique()
        for group, sub in per_image[per_image["dataset"].isin(in_set)].groupby("group"):
            rec = stats[(measure, "", group, POOLED)]
            assert rec["n"] == len(sub) == 48 and rec["mean"] == pytest.approx(sub["value"].mean(), rel=1e-12)
    # per run: the run's own values; pairwise stability counts for both runs of a pair
    for rec in (r for r in summary["per_run"] if r["measure"] in ("entropy_norm", "stability_ssim")):
        sel = rows[(rows["measure"] == rec["measure"]) & (rows["group"] == rec["group"])]
        sel = sel[sel["run"].str.split("|").map(lambda parts, run=rec["run"]: run in parts)]
        sel = sel[sel["dataset"].isin(in_set) if rec["dataset"] == POOLED else sel["dataset"] == rec["dataset"]]
        per_image = sel.groupby(["dataset", "index"])["value"].mean()
        assert rec["n"] == len(per_image) and rec["mean"] == pytest.approx(per_image.mean(), rel=1e-12)
    # stability matrix entries: mean over images of each pair
    stab = rows[rows["measure"] == "stability_ssim"]
    for mat in summary["stability_matrices"]:
        sel = stab[(stab["group"] == mat["group"])]
        sel = sel[sel["dataset"].isin(in_set) if mat["dataset"] == POOLED else sel["dataset"] == mat["dataset"]]
        for a, b in itertools.combinations(range(len(mat["runs"])), 2):
            pair = sel[sel["run"].isin([f"{mat['runs'][a]}|{mat['runs'][b]}", f"{mat['runs'][b]}|{mat['runs'][a]}"])]
            assert mat["matrix"][a][b] == pytest.approx(pair["value"].mean(), rel=1e-12)
    # detection per run: accuracy at the threshold and ROC-AUC as P(score_1 > score_0) over all pairs
    scores = rows[(rows["measure"] == "score") & rows["label"].isin([0, 1])]
    for rec in summary["detection"]["per_run"]:
        sel = scores[scores["run"] == rec["run"]]
        sel = sel[sel["dataset"].isin(in_set) if rec["dataset"] == POOLED else sel["dataset"] == rec["dataset"]]
        s, y = sel["value"].to_numpy(), sel["label"].to_numpy()
        assert rec["n"] == len(sel) and rec["accuracy"] == pytest.approx(np.mean((s > 0.5) == (y == 1)))
        diff = s[y == 1][:, None] - s[y == 0][None, :]
        assert rec["roc_auc"] == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)), abs=1e-12)
    # images with results per dataset; out-of-set entropy against all in-set images
    assert {k: v["n_in_results"] for k, v in summary["audit"]["datasets"].items()} == \
        rows.groupby("dataset")["index"].nunique().to_dict()
    ent = _per_image(rows, "entropy_norm")
    for rec in summary["out_of_set_entropy"]:
        sub = ent[ent["group"] == rec["group"]]
        inset, outset = sub[sub["dataset"].isin(in_set)]["value"], sub[sub["dataset"] == rec["dataset"]]["value"]
        assert (rec["n_inset"], rec["n_outset"]) == (len(inset), len(outset))
        assert rec["mean_diff"] == pytest.approx(outset.mean() - inset.mean(), rel=1e-12)


def test_rows_of_an_image_split_over_files_are_read_together(real_audit, tmp_path):
    """Files that do not follow the shard layout are merged before per-image values are made."""
    rows = real_audit["rows"]
    (tmp_path / "results").mkdir()
    # A hand-made layout (rows re-split over files), so no shard list / audit id to check them against.
    hand_made = {k: v for k, v in real_audit["meta"].items() if k not in ("shards", "audit_id")}
    (tmp_path / "audit.json").write_text(json.dumps(hand_made), encoding="utf-8")
    shuffled = rows.sample(frac=1.0, random_state=0).reset_index(drop=True)
    for k, part in enumerate(np.array_split(np.arange(len(shuffled)), 3)):
        shuffled.iloc[part].to_parquet(tmp_path / "results" / f"part-{k}.parquet", index=False)
    assert len(plan_units(result_files(tmp_path))) == 1
    streamed = summarize_folder(tmp_path, n_boot=N_BOOT)
    _assert_summaries_equal(streamed, summarize(shuffled, real_audit["meta"], n_boot=N_BOOT))


# ----------------------------------------------------------------------------- bounded samples


@pytest.fixture(scope="module")
def big_audit(tmp_path_factory):
    """3 groups x 3 runs; d1: 2000 in-set images, d2: 1000 in-set images; ``shifted`` has entropy +0.05."""
    out = tmp_path_factory.mktemp("big") / "audit"
    write_synthetic_audit(out, datasets={"d1": ("in", 2000), "d2": ("in", 1000)}, shard_size=500, batch_size=100)
    return out


def test_small_capacity_keeps_moments_exact(big_audit):
    capacity = 50
    meta = load_audit_meta(big_audit)
    acc = accumulate_results(big_audit, meta, capacity=capacity)
    summary = json.loads(json.dumps(summary_from_accumulator(acc, meta, n_boot=N_BOOT)))
    rows = load_results(big_audit)
    ent = _per_image(rows, "entropy_norm")
    stats = {(r["measure"], r["variant"], r["group"], r["dataset"]): r for r in summary["stats"]}
    samples = acc.group_samples(summary["in_set"])
    shift = {"a": 0.0, "b": 0.0, "shifted": 0.05}
    covered = 0
    for group in ("a", "b", "shifted"):
        for dataset in ("d1", "d2", POOLED):
            sub = ent[ent["group"] == group]
            vals = (sub if dataset == POOLED else sub[sub["dataset"] == dataset])["value"].to_numpy()
            rec = stats[("entropy_norm", "", group, dataset)]
            assert rec["n"] == vals.size == {"d1": 2000, "d2": 1000, POOLED: 3000}[dataset]
            assert rec["mean"] == pytest.approx(vals.mean(), rel=1e-12)
            assert rec["std"] == pytest.approx(vals.std(ddof=1), rel=1e-9)
            half = Z95 * rec["std"] / math.sqrt(rec["n"])
            assert rec["ci_low"] == pytest.approx(rec["mean"] - half, rel=1e-12)
            assert rec["ci_high"] == pytest.approx(rec["mean"] + half, rel=1e-12)
            truth = 0.6 + shift[group]  # mean of the generating distribution
            assert abs(rec["mean"] - truth) < 4 * half / Z95  # within 4 standard errors
            covered += rec["ci_low"] < truth < rec["ci_high"]
            sample = samples[("entropy_norm", "", group, dataset)]
            assert not sample.exact and sample.values().size == capacity
            assert set(sample.values()) <= set(vals)
    assert covered >= 7  # 95% CIs: 8.55 of 9 expected to hold the true mean (d1 and d2 within the pooled)
    approximated = {(r["measure"], r["group"], r["dataset"]) for r in summary["method"]["approximated"]["stats"]}
    assert ("entropy_norm", "a", POOLED) in approximated and summary["method"]["sample_capacity"] == capacity
    # planted difference found (Welch from exact moments, Mann-Whitney on 50 + 50 sampled images) ...
    cmps = {(c["group_a"], c["group_b"], c["dataset"]): c for c in summary["comparisons"]
            if c["measure"] == "entropy_norm"}
    for dataset in ("d1", POOLED):
        hit = cmps[("a", "shifted", dataset)]
        assert hit["n_a"] == stats[("entropy_norm", "", "a", dataset)]["n"]
        assert hit["mean_diff"] == pytest.approx(stats[("entropy_norm", "", "a", dataset)]["mean"]
                                                 - stats[("entropy_norm", "", "shifted", dataset)]["mean"], rel=1e-12)
        assert hit["mannwhitney_p"] < 1e-3 and hit["welch_p"] < 1e-10 and hit["cliffs_delta"] < -0.3
        assert hit["verdict"]["images"]["separates"] is True  # for these trained runs ...
        # ... but 3 runs against 3 cannot show a family difference: the exact permutation p is at least 2/20
        assert hit["runs"]["p"] == pytest.approx(0.1) and hit["runs"]["min_p"] == pytest.approx(0.1)
        assert hit["verdict"]["separates"] is False
        # ... and none between two groups of the same distribution
        null = cmps[("a", "b", dataset)]
        assert null["mannwhitney_p"] > 0.01 and null["welch_p"] > 0.01 and null["verdict"]["images"]["separates"] is False
    # per run and stability matrices from running moments: exact
    per_run = {(r["measure"], r["run"], r["dataset"]): r for r in summary["per_run"]}
    own = rows[(rows["measure"] == "entropy_norm") & (rows["run"] == "b_s1") & (rows["dataset"] == "d1")]["value"]
    assert per_run[("entropy_norm", "b_s1", "d1")]["n"] == 2000
    assert per_run[("entropy_norm", "b_s1", "d1")]["mean"] == pytest.approx(own.mean(), rel=1e-12)
    assert per_run[("entropy_norm", "b_s1", "d1")]["std"] == pytest.approx(own.std(), rel=1e-9)
    mat = next(m for m in summary["stability_matrices"] if (m["group"], m["dataset"]) == ("shifted", POOLED))
    pair = rows[(rows["measure"] == "stability_ssim") & (rows["run"] == "shifted_s0|shifted_s2")]
    assert mat["matrix"][0][2] == pytest.approx(pair["value"].mean(), rel=1e-12)
    # detection: counts exact, ROC-AUC from 50 + 50 sampled scores per class
    det = next(r for r in summary["detection"]["per_run"] if (r["run"], r["dataset"]) == ("a_s0", POOLED))
    scores = rows[(rows["measure"] == "score") & (rows["run"] == "a_s0")]
    s, y = scores["value"].to_numpy(), scores["label"].to_numpy()
    assert det["n"] == 3000 and det["accuracy"] == pytest.approx(np.mean((s > 0.5) == (y == 1)), rel=1e-12)
    assert det["apcer"] == pytest.approx(np.mean(s[y == 1] <= 0.5), rel=1e-12)
    assert det["bpcer"] == pytest.approx(np.mean(s[y == 0] > 0.5), rel=1e-12)
    diff = s[y == 1][:, None] - s[y == 0][None, :]
    assert det["roc_auc"] == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)), abs=0.06)
    assert {"group": "a", "run": "a_s0", "dataset": POOLED} in summary["method"]["approximated"]["detection"]
    assert summary["audit"]["datasets"]["d1"]["n_in_results"] == 2000


def test_aggregates_do_not_grow_with_the_images(tmp_path):
    capacity = 50
    stored, values = {}, {}
    for n in (1000, 4000):
        out = write_synthetic_audit(tmp_path / f"n{n}", datasets={"d1": ("in", n), "d2": ("in", n)},
                                    shard_size=250, batch_size=50)
        acc = accumulate_results(out, load_audit_meta(out), capacity=capacity)
        stored[n] = acc.stored()
        values[n] = sum(s.n for s in acc.group_samples(["d1", "d2"]).values())
    assert values[4000] == 4 * values[1000]  # 4x the per-image values went in ...
    n_samples = len(acc._gsample) + len(acc._pooled) + 2 * len(acc._det)
    assert stored[4000] <= 3 * capacity * n_samples  # ... at most 3 x capacity numbers per sample stay
    assert stored[4000] <= 1.5 * stored[1000]


def test_value_sample_is_exact_then_a_reservoir():
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 2.0, 100_000)
    data[::1000] = np.nan  # not counted
    sample = ValueSample(capacity=100, seed=7)
    for part in np.array_split(data, 997):
        sample.update(part)
        assert sample.stored() <= 300
    finite = data[np.isfinite(data)]
    assert sample.n == finite.size and sample.rows == data.size and not sample.exact
    assert sample.moments.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert sample.moments.std == pytest.approx(finite.std(ddof=1), rel=1e-10)
    kept = sample.values()
    assert kept.size == 100 and set(kept) <= set(finite) and abs(kept.mean() - 3.0) < 1.0
    small = ValueSample(capacity=100)
    small.update(finite[:60])
    small.update(finite[60:100])
    assert small.exact and np.array_equal(small.values(), finite[:100])  # every value, in order


def test_index_ranges_count_distinct_images():
    ranges = IndexRanges()
    for idx in ([5, 6, 7], [0, 1, 2, 3, 4], [7, 8], [20, 22], [9, 10, 11], [21]):
        ranges.add(np.array(idx))
    assert len(ranges) == 12 + 3 and ranges.starts.tolist() == [0, 20] and ranges.stops.tolist() == [12, 23]


def test_chunks_are_cut_between_images_only():
    def table(index):
        n = len(index)
        cols = {"dataset": ["d"] * n, "path": [""] * n, "index": index, "label": [0] * n, "group": ["g"] * n,
                "run": ["r"] * n, "measure": ["m"] * n, "variant": [""] * n, "value": [0.0] * n}
        return rows_table({k: np.asarray(v, dtype=object if k not in ("index", "label", "value") else None)
                           for k, v in cols.items()})

    # batch-major rows (images 0-1, then 2-3, ...): cuts between batches
    batches = table([0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5])
    assert chunk_bounds(batches, 4) == [0, 4, 8, 12]
    assert chunk_bounds(batches, 5) == [0, 4, 8, 12]
    # every image spread over the whole table: one chunk
    assert chunk_bounds(table([0, 1, 2, 0, 1, 2]), 2) == [0, 6]


def test_summarize_with_a_capacity_matches_streaming(big_audit):
    """``summarize`` of rows in memory and the streamed summary share one implementation and capacity."""
    meta = load_audit_meta(big_audit)
    streamed = summarize_folder(big_audit, n_boot=N_BOOT, capacity=50)
    acc = AuditAccumulator(meta, capacity=50)
    for chunk in iter_result_chunks(big_audit):
        acc.add(chunk)
    again = summary_from_accumulator(acc, meta, n_boot=N_BOOT)
    _assert_summaries_equal(again, streamed)
    assert summarize(load_results(big_audit), meta, n_boot=N_BOOT)["method"]["approximated"]["stats"] == []


def test_missing_columns_and_unreadable_shards_are_input_errors(tmp_path):
    from salience_audit.errors import InputError

    (tmp_path / "results").mkdir()
    pd.DataFrame({"dataset": ["d"], "index": [0], "value": [1.0]}).to_parquet(tmp_path / "results" / "a.parquet")
    with pytest.raises(InputError, match="lack the column"):
        write_summary(tmp_path, n_boot=10)
    (tmp_path / "results" / "a.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read result shard"):
        write_summary(tmp_path, n_boot=10)
    assert not Path(tmp_path / "summary.json").exists()
    pq.write_table(pa.table({c: pa.array([], type=f.type) for c, f in zip(ROW_SCHEMA.names, ROW_SCHEMA)}),
                   tmp_path / "results" / "a.parquet")
    summary = json.loads(write_summary(tmp_path, n_boot=10).read_text(encoding="utf-8"))
    assert summary["stats"] == [] and summary["datasets"] == []


def test_report_command_with_a_sample_capacity(big_audit, tmp_path):
    """The report draws sampled distributions and says which cells were approximated."""
    out = tmp_path / "audit"
    import shutil

    shutil.copytree(big_audit, out)
    assert main(["report", str(out), "--sample-capacity", "50"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["method"]["sample_capacity"] == 50 and summary["method"]["approximated"]["stats"]
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "have more than 50 images" in html and "Salience entropy per image" in html


def test_two_runs_per_group_give_no_family_verdict(real_audit):
    """2 runs per family: the numbers are shown, the verdict says there are not enough runs."""
    from salience_audit.report.document.content import build_document
    from salience_audit.report.render.markdown import render_markdown

    summary = real_audit["streamed"]
    assert summary["families"]["xent"] == "plain" and summary["families"]["cyborg"] == "guided"
    cmps = [c for c in summary["comparisons"] if c["group_a"] != "human" and c["group_b"] != "human"]
    assert cmps
    for cmp in cmps:
        verdict = cmp["verdict"]
        if cmp["runs"] is None:
            continue
        assert verdict["separates"] is None and verdict["enough_runs"] is False
        assert verdict["label"] == "not enough runs to compare families (n = 2 and 2)"
        assert verdict["study_check"] in ("not enough runs", None)
    ent = next(c for c in cmps if (c["measure"], c["dataset"]) == ("entropy_norm", "faces"))
    assert ent["verdict"]["study_check"] == "not enough runs" and ent["runs"]["p"] == pytest.approx(2 / 6)
    fam = next(r for r in summary["stats"] if (r["measure"], r["group"], r["dataset"]) == ("entropy_norm", "xent",
                                                                                           "faces"))["family"]
    assert fam["n_runs"] == 2 and fam["mean"] is not None  # numbers still shown
    text = render_markdown(build_document(summary, []))
    assert "not enough runs to compare families (n = 2 and 2)" in text
    assert "Benjamini-Hochberg" in text and "adjusted" in text


def test_model_selection_uses_validation_accuracy_with_human_maps(real_audit):
    """The human reference group has no validation accuracy; selection still uses the runs' best_val_acc."""
    summary, meta = real_audit["streamed"], real_audit["meta"]
    assert "human" in summary["groups"]  # human maps were audited as a reference group
    sel = summary["selection"]
    assert sel["accuracy_source"] == "validation" and "validation accuracy" in sel["rule"]
    rows = {r["run"]: r for r in sel["rows"]}
    assert "human" not in {r["group"] for r in rows.values()}
    for run, rec in rows.items():  # independent oracle: the runs' own run.json
        run_json = json.loads((Path(meta["runs"][run]["path"]) / "run.json").read_text(encoding="utf-8"))
        assert rec["val_accuracy"] == pytest.approx(run_json["best_val_acc"] / (100 if run_json["best_val_acc"] > 1
                                                                                else 1))
        assert rec["accuracy"] == rec["val_accuracy"]  # never the test accuracy
    best = max(r["val_accuracy"] for r in rows.values())
    for rec in rows.values():
        assert rec["equally_accurate"] == (rec["val_accuracy"] >= best - 0.01 - 1e-12)
    assert sel["selected"] in rows and rows[sel["selected"]]["overall_rank"] == 1
    assert sel["reason"].startswith("validation accuracy within 1 pp")


def test_min_runs_is_configurable(real_audit, tmp_path):
    """``report --min-runs 2`` gives the 2-run audit family verdicts (none can reach p < 0.05 with 2 and 2 runs)."""
    out = tmp_path / "copy"
    shutil.copytree(real_audit["out"], out)
    assert real_audit["meta"]["config"]["min_runs"] == 3  # the audit's setting, in audit.json
    assert main(["report", str(out), "--min-runs", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["method"]["min_runs"] == 2
    ent = next(c for c in summary["comparisons"] if (c["measure"], c["dataset"], c["group_a"]) == ("entropy_norm", "faces",
                                                                                                  "xent"))
    assert ent["verdict"]["enough_runs"] is True and ent["verdict"]["separates"] is False
    assert "no p below 0.333 is possible" in ent["verdict"]["label"]
    assert main(["report", str(out), "--min-runs", "1"]) == EXIT_BAD_INPUT  # refused with a message
