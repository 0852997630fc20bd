"""What the report says: builds the :class:`~salience_audit.report.document.blocks.Document` from the summary.

One section per question (detection, the five measures, human agreement), then the
gallery, the model-selection view, an optional comparison with a second audit and the
audit's metadata. Every string is plain text; renderers escape it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from salience_audit.measures.entropy import ENTROPY_NORM
from salience_audit.measures.noise_reaction import CURVES as NOISE_CURVES
from salience_audit.measures.noise_reaction import NOISE_CORRECT, NOISE_ENTROPY, NOISE_SCORE, NOISE_SSIM
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.profiles import DEFAULT_PROFILE, DESCRIPTIONS
from salience_audit.report.document.blocks import (
    Block,
    Cell,
    Details,
    Document,
    FigureBlock,
    FigureOut,
    Heading,
    KeyValues,
    Paragraph,
    Section,
    Table,
)
from salience_audit.report.document.tables import (
    dataset_label,
    findings_table,
    has_measure,
    stats_table,
    tests_table,
    variant_table,
)
from salience_audit.report.formatting import (
    MISSING,
    direction_text,
    fmt_ci,
    fmt_int,
    fmt_num,
    fmt_p,
    fmt_pct,
    is_number,
)
from salience_audit.report.summary import selection as selection_mod
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.curves import noise_amount
from salience_audit.report.summary.describe import described_outputs, extra_sections, info, known, section

Summary = Mapping[str, Any]

HOW_TO_READ = (
    "Each section answers one question about how the models decide. The question a model family (e.g. guided vs "
    "plain training) asks is about the training recipe, so training runs count: a group's number is the mean of "
    "its runs' means over images, and its 95% CI ('runs x images') covers both the randomness of training and the "
    "choice of images (a two-way bootstrap with a small-sample correction at run level). Two groups are compared "
    "at the level of runs (a permutation test of run labels; stability: a jackknife t over runs and images), with "
    "the difference's CI and Hedges' g. Detection metrics are computed per run and their CIs are over runs.",
    "Verdicts: two groups are 'separated' when the run-level p-value, Benjamini-Hochberg adjusted over all the "
    "comparisons of this report, is below 0.05 and each group has enough runs; with fewer runs the report says "
    "'not enough runs to compare families' and still shows the numbers. A verdict resting on one run (leaving it "
    "out flips or halves the difference) is flagged. 'Original study' is what Crum et al. (2023) found for models "
    "trained with human-salience guidance (e.g. CYBORG) compared with plain cross-entropy models, and whether this "
    "audit agrees.",
    "The image-level view (CIs over images only, Mann-Whitney tests on the per-image values, also adjusted) is kept "
    "beside it and labelled 'for these trained runs': it says whether these particular runs differ on these images, "
    "not whether the families do. Numbers are shown to 3 decimals; a dash means undefined. Formulas and when to use "
    "which view: docs/statistics.md.",
)


def slug(text: str) -> str:
    """An in-page anchor made of [a-z0-9-] only."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class _Figures:
    """Figures by name; each is placed at most once."""

    def __init__(self, figures: Sequence[FigureOut]) -> None:
        self._by_name = {f.name: f for f in figures}
        self._gallery = [f for f in figures if f.section == "gallery"]

    def block(self, name: str) -> list[Block]:
        fig = self._by_name.pop(name, None)
        return [FigureBlock(fig)] if fig else []

    def gallery(self) -> list[Block]:
        return [FigureBlock(f) for f in self._gallery]


def _measure_intro(measure: str, variant: str = "") -> Paragraph:
    m = info(measure)
    s = section(m.section)
    question = "" if s is not None and s.question == m.question else f"{m.question} "
    text = f"{question}Unit: {m.unit}; {direction_text(m.direction(variant))}."
    if m.study:
        text += f" Original study: guided models {m.study} than plain ones."
    if m.note:
        text += f" {m.note}"
    return Paragraph(text, "question")


def measure_blocks(summary: Summary, measure: str, variants: Sequence[str] = ("",), level: int = 3) -> list[Block]:
    """Heading, question, stats table and tests table of one measure (each variant in turn).

    Secondary measures (see :class:`MeasureInfo`) are wrapped in a collapsed :class:`Details`.
    """
    present = [v for v in variants if has_measure(summary, measure, v)]
    if not present:
        return []
    if known(measure) and not info(measure).primary and level == 3:
        return [Details(f"{info(measure).title} (secondary)", measure_blocks(summary, measure, variants, level=4))]
    blocks: list[Block] = [Heading(info(measure).title, level, anchor=f"m-{slug(measure)}"), _measure_intro(measure)]
    for v in present:
        if len(present) > 1:
            blocks.append(Heading(f"{info(measure).title}: {v}", level + 1))
            if info(measure).direction(v) != info(measure).better:
                blocks.append(Paragraph(f"Variant {v}: {direction_text(info(measure).direction(v))}.", "note"))
        for table in (stats_table(summary, measure, v), tests_table(summary, measure, v)):
            if table is not None:
                blocks.append(table)
    return blocks


def _section(key: str, blocks: list[Block]) -> Section | None:
    if not any(not isinstance(b, Paragraph) for b in blocks):
        return None
    s = section(key)
    head: list[Block] = []
    if s is not None:
        head = [Paragraph(s.question, "question"), Paragraph(s.intro)]
    return Section(key, s.title if s else key, head + blocks)


# ----------------------------------------------------------------------------- sections


def _threshold(summary: Summary) -> float:
    """The decision threshold the detection numbers were computed at."""
    return float((summary.get("method") or {}).get("detection_threshold", 0.5))


def _profile(summary: Summary) -> str:
    return str((summary.get("audit") or {}).get("profile") or DEFAULT_PROFILE)


def profile_paragraph(summary: Summary) -> Paragraph:
    """Which conventions made the numbers (the first thing the report says)."""
    name = _profile(summary)
    text = f"Profile: {name}, {DESCRIPTIONS.get(name, 'unknown profile')}."
    if name == "study":
        text += (" Numbers compare with the original study's; they differ from a default-profile audit of the "
                 "same models, and the tool refuses to compare the two.")
    return Paragraph(text, "note" if name == "study" else "question")


def _run_count_note(summary: Summary) -> Paragraph | None:
    """What the run counts allow: not enough runs for a family verdict, or a permutation floor above 0.05."""
    method = summary.get("method") or {}
    min_runs = method.get("min_runs")
    counts: dict[str, int] = {}
    for rec in summary.get("stats") or []:
        fam = rec.get("family") or {}
        if is_number(fam.get("n_runs")) and rec["group"] in (summary.get("families") or {}) and rec["group"] != "human":
            counts[rec["group"]] = max(counts.get(rec["group"], 0), int(fam["n_runs"]))
    if not counts:
        return None
    listed = ", ".join(f"{g}: {n}" for g, n in counts.items())
    few = [g for g, n in counts.items() if is_number(min_runs) and n < min_runs]
    if few:
        return Paragraph(f"Runs per group: {listed}. With fewer than {min_runs} runs in a group there is not enough "
                         "runs to compare families: no family verdict and no check against the original study is "
                         "given (the numbers are shown). Train more runs per family (the study used 10).", "note")
    return Paragraph(f"Runs per group: {listed}. Run-level p-values are adjusted over "
                     f"{fmt_int((method.get('multiple_comparisons') or {}).get('m_run_level'))} comparisons "
                     "(Benjamini-Hochberg).", "question")


def overview_section(summary: Summary, figs: _Figures | None = None) -> Section:
    """The forest plot (first figure), the summary-of-findings table, then how to read the report."""
    blocks: list[Block] = [profile_paragraph(summary)]
    if figs is not None:
        blocks += figs.block("forest")
    note = _run_count_note(summary)
    if note is not None:
        blocks.append(note)
    blocks.append(Heading("Summary of findings", 3))
    table = findings_table(summary, primary=True)
    blocks.append(table if table else Paragraph("No measure values were found in this audit.", "note"))
    secondary = findings_table(summary, primary=False)
    if secondary:
        blocks.append(Details("Secondary measures (alternative forms and controls)", [secondary]))
    blocks += [Heading("How to read this report", 3)] + [Paragraph(p) for p in HOW_TO_READ]
    fams = summary.get("families") or {}
    known = [f"{g} = {fam}" for g, fam in fams.items() if fam]
    if known:
        blocks.append(Paragraph("Model families recognised for the study's directions: " + "; ".join(known) + "."))
    if "human" in (summary.get("groups") or []):
        blocks.append(Paragraph("The column 'human' is not a model: it is the human annotation maps themselves "
                                "(resized to the models' map size), measured like a model's maps, as a reference; "
                                "it is not tested against the models."))
    else:
        blocks.append(Paragraph("No group was recognised as salience-guided or plain (from the runs' 'loss', "
                                "'family' or 'alpha' metadata or the group names), so the study's directions are "
                                "shown but not checked.", "note"))
    incomplete = (summary.get("audit") or {}).get("incomplete")
    if isinstance(incomplete, dict):
        blocks.append(Paragraph(f"Incomplete results: they hold {incomplete.get('images')} of {incomplete.get('of')} "
                                f"images (image x group slots); {incomplete.get('missing_shards')} shard file(s) "
                                "are missing. Every number below covers only the images present; run the audit "
                                "command again to compute the rest.", "note"))
    n_rejected = (summary.get("audit") or {}).get("rejected")
    if isinstance(n_rejected, int) and n_rejected > 0:
        blocks.append(Paragraph(f"{n_rejected} image(s) could not be used (unreadable files, or models giving "
                                "non-finite scores) and were left out; each is listed with its reason in "
                                "rejected.csv next to this report's folder.", "note"))
    skipped = (summary.get("audit") or {}).get("skipped_measures") or {}
    for group, measures in sorted(skipped.items()):
        blocks.append(Paragraph(f"Group {group!r} holds precomputed maps (no model): {', '.join(measures)} "
                                f"{'needs' if len(measures) == 1 else 'need'} a model and "
                                f"{'was' if len(measures) == 1 else 'were'} not computed for it; its entropy, "
                                "stability and human agreement come from the maps as given.", "note"))
    runs = (summary.get("audit") or {}).get("runs") or {}
    unfinished = sorted(name for name, info in runs.items() if isinstance(info, dict) and info.get("finished") is False)
    if unfinished:
        blocks.append(Paragraph(f"Unfinished training run(s), audited on request (--allow-unfinished): "
                                f"{', '.join(unfinished)}. Their training stopped early; their numbers describe "
                                "a model that was not fully trained.", "note"))
    method = summary.get("method") or {}
    sampled = (method.get("approximated") or {}).get("stats") or []
    if sampled:
        cap = method.get("sample_capacity")
        blocks.append(Paragraph(
            f"{len(sampled)} cell(s) (measure x group x dataset) have more than {fmt_int(cap)} images. For them n, "
            "mean and standard deviation are exact, the 95% CI is the normal one (mean +- 1.96 sd / sqrt(n)) instead "
            f"of a bootstrap, the Welch test uses the exact moments, and the Mann-Whitney test, Cliff's delta, the "
            f"distribution tests and the distribution figures use a uniform random sample of {fmt_int(cap)} images "
            "(summary.json, method.approximated, lists them).", "note"))
    return Section("overview", "Overview", blocks)


def _ci_runs(m: Mapping[str, Any] | None) -> Cell:
    if not m or not is_number(m.get("mean")):
        return Cell(MISSING, "num muted")
    return Cell(fmt_ci(m["mean"], m.get("ci_low"), m.get("ci_high")), "num")


def detection_section(summary: Summary, figs: _Figures) -> Section | None:
    """Detection quality per dataset and group, and per run."""
    det = summary.get("detection") or {}
    per_group = det.get("per_group") or []
    if not per_group:
        return None
    order = {d: i for i, d in enumerate([*summary["datasets"], POOLED])}
    group_order = {g: i for i, g in enumerate(summary["groups"])}
    rows = []
    for rec in sorted(per_group, key=lambda r: (order.get(r["dataset"], 99), group_order.get(r["group"], 99))):
        rows.append([Cell(dataset_label(summary, rec["dataset"])), Cell(rec["group"])]
                    + [_ci_runs(rec.get(m)) for m in ("accuracy", "roc_auc", "apcer", "bpcer", "acer")]
                    + [Cell(fmt_int(rec.get("n_runs")), "num muted"), Cell(fmt_int(rec.get("n_images")), "num muted")])
    blocks: list[Block] = [Table(
        ["Dataset", "Group", "Accuracy", "ROC-AUC", "APCER", "BPCER", "ACER", "Runs", "Images"], rows,
        f"Mean over runs [bootstrap 95% CI over runs] at the {_threshold(summary):g} threshold on the 'Synthetic' "
        "probability. Only images labelled real or synthetic count.")]
    blocks += figs.block("detection")
    run_rows = [
        [Cell(r["run"]), Cell(r["group"]), Cell(dataset_label(summary, r["dataset"]))]
        + [Cell(fmt_num(r.get(m)), "num") for m in ("accuracy", "roc_auc", "apcer", "bpcer", "acer")]
        + [Cell(fmt_int(r.get("n")), "num muted")]
        for r in det.get("per_run") or []
    ]
    if run_rows:
        blocks.append(Details("Detection per run", [Table(
            ["Run", "Group", "Dataset", "Accuracy", "ROC-AUC", "APCER", "BPCER", "ACER", "Images"], run_rows)]))
    return _section("detection", blocks)


def entropy_section(summary: Summary, figs: _Figures) -> Section | None:
    """(a) Salience entropy."""
    blocks = measure_blocks(summary, ENTROPY_NORM)
    blocks += figs.block("entropy_distribution")
    blocks += measure_blocks(summary, "entropy") + measure_blocks(summary, "spatial_entropy")
    return _section("entropy", blocks)


def _noise_variants(summary: Summary, measure: str) -> list[str]:
    found = {r["variant"] for r in summary["stats"]
             if r["measure"] == measure and noise_amount(r["variant"]) is not None}
    return sorted(found, key=lambda v: noise_amount(v) or 0.0)


def out_of_set_blocks(summary: Summary, figs: _Figures) -> list[Block]:
    """Entropy of user-given out-of-set datasets vs the in-set data, and the distance of mean maps."""
    shift = summary.get("out_of_set_entropy") or []
    if not shift:
        return []
    blocks: list[Block] = [
        Heading("User-given out-of-set datasets", 3, anchor="out-of-set"),
        Paragraph("Per-image normalised entropy of all in-set images against each out-of-set dataset, per group: "
                  "difference of means (out-of-set minus in-set), two-sample Kolmogorov-Smirnov test and "
                  "Wasserstein distance (in entropy units).", "question"),
    ]
    rows = [[Cell(r["group"]), Cell(r["dataset"]), Cell(fmt_num(r.get("mean_inset")), "num"),
             Cell(fmt_num(r.get("mean_outset")), "num"), Cell(fmt_num(r.get("mean_diff")), "num"),
             Cell(fmt_num(r.get("ks_stat")), "num"), Cell(fmt_p(r.get("ks_p")), "num"),
             Cell(fmt_num(r.get("wasserstein")), "num"),
             Cell(f"{fmt_int(r.get('n_inset'))} / {fmt_int(r.get('n_outset'))}", "num muted")]
            for r in shift]
    blocks.append(Table(["Group", "Out-of-set dataset", "In-set mean", "Out-of-set mean", "Difference",
                         "KS statistic", "KS test", "Wasserstein", "Images (in / out)"], rows,
                        "Normalised salience entropy (0-1)."))
    blocks += figs.block("out_of_set_entropy")
    maps = summary.get("mean_map_shift") or []
    if maps:
        agg: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in maps:
            agg.setdefault((r["group"], r["dataset"]), []).append(r)
        rows = []
        for (group, dataset), recs in agg.items():
            l1 = [r["l1"] for r in recs if is_number(r.get("l1"))]
            ss = [r["ssim"] for r in recs if is_number(r.get("ssim"))]
            rows.append([Cell(group), Cell(dataset), Cell(fmt_num(sum(l1) / len(l1) if l1 else None), "num"),
                         Cell(fmt_num(sum(ss) / len(ss) if ss else None), "num"),
                         Cell(fmt_int(len(recs)), "num muted")])
        blocks.append(Table(["Group", "Out-of-set dataset", "Mean-map L1 distance", "Mean-map SSIM", "Runs"], rows,
                            "Distance between the run's in-set mean map and its out-of-set mean map, averaged over "
                            "runs (L1: 0 = identical; SSIM: 1 = identical)."))
    blocks += figs.block("mean_maps")
    return blocks


def noise_section(summary: Summary, figs: _Figures) -> Section | None:
    """(b) Reaction to out-of-set samples: noise curves and user-given out-of-set datasets."""
    blocks: list[Block] = []
    for measure in (NOISE_CURVES[NOISE_SSIM], NOISE_CURVES[NOISE_SCORE], NOISE_CURVES[NOISE_ENTROPY],
                    NOISE_CURVES[NOISE_CORRECT]):
        blocks += measure_blocks(summary, measure)
    blocks += figs.block("noise_curves")
    curve_tables: list[Block] = []
    for measure in NOISE_CURVES:
        table = variant_table(summary, measure, _noise_variants(summary, measure), summary.get("headline_dataset"))
        if table:
            curve_tables += [_measure_intro(measure), table]
    if curve_tables:
        blocks.append(Details("Values at every noise amount", curve_tables))
    blocks += out_of_set_blocks(summary, figs)
    return _section("noise", blocks)


def transforms_section(summary: Summary, figs: _Figures) -> Section | None:
    """(c) Following geometric transformations."""
    blocks: list[Block] = []
    for measure in ("equivariance", "invariance", "transform_score_change"):
        blocks += measure_blocks(summary, measure, ("all",))
    blocks += figs.block("transforms")
    order = list((summary.get("audit") or {}).get("transform_variants") or [])
    per_variant: list[Block] = []
    for measure in ("equivariance", "invariance", "transform_score_change"):
        found = {r["variant"] for r in summary["stats"] if r["measure"] == measure}
        variants = [v for v in order if v in found] + sorted(found - set(order) - {"all"})
        table = variant_table(summary, measure, variants, summary.get("headline_dataset"))
        if table:
            per_variant.append(table)
    if per_variant:
        blocks.append(Details("Values per transformation", per_variant))
    return _section("transforms", blocks)


def stability_section(summary: Summary, figs: _Figures) -> Section | None:
    """(d) Stability across training runs."""
    blocks = measure_blocks(summary, STABILITY_SSIM)
    blocks += figs.block("stability_matrix") + figs.block("stability_distribution")
    blocks += measure_blocks(summary, "stability_spearman") + measure_blocks(summary, "stability_iou")
    single = [g for g, runs in ((summary.get("audit") or {}).get("groups") or {}).items() if len(runs or []) < 2]
    if single:
        blocks.append(Paragraph("Groups with a single run have no stability values: " + ", ".join(single) + ".",
                                "note"))
    return _section("stability", blocks)


def degradation_section(summary: Summary, figs: _Figures) -> Section | None:
    """(e) Salience-guided degradation, deletion and insertion."""
    modes = ("background", "object")
    blocks = measure_blocks(summary, "degrade_faithfulness")
    blocks += measure_blocks(summary, "degrade_true_score_drop", modes)
    blocks += measure_blocks(summary, "degrade_accuracy_change", modes)
    blocks += figs.block("degradation")
    blocks += measure_blocks(summary, "degrade_ssim", modes)
    raw = measure_blocks(summary, "degrade_score_change", modes, level=4)
    if raw:
        blocks.append(Details("Raw score change (synthetic score, not signed by the true class)", raw))
    for measure in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
        blocks += measure_blocks(summary, measure)
    blocks += figs.block("deletion_insertion")
    return _section("degradation", blocks)


def human_section(summary: Summary, figs: _Figures) -> Section | None:
    """Agreement with human maps (only when those rows exist)."""
    blocks = measure_blocks(summary, "human_ssim") + measure_blocks(summary, "human_spearman")
    if not blocks:
        return None
    blocks += figs.block("human_agreement")
    return _section("human", blocks)


def measure_section(summary: Summary, key: str) -> Section | None:
    """The section of a measure the report has no dedicated layout for (a user measure): each output's tables."""
    blocks: list[Block] = []
    for out in described_outputs():
        if out.section == key:
            variants = sorted({r["variant"] for r in summary["stats"] if r["measure"] == out.name})
            blocks += measure_blocks(summary, out.name, variants)
    return _section(key, blocks)


def other_section(summary: Summary) -> Section | None:
    """Measures this report does not know, shown generically."""
    unknown = sorted(m for m in {r["measure"] for r in summary["stats"]} - {"score"} if not known(m))
    blocks: list[Block] = []
    for measure in unknown:
        variants = sorted({r["variant"] for r in summary["stats"] if r["measure"] == measure})
        blocks += measure_blocks(summary, measure, variants)
    if not blocks:
        return None
    return Section("other", "Other measures", [Paragraph("Measures without a description in this report.")] + blocks)


def gallery_section(summary: Summary, figs: _Figures, items: Sequence[Mapping[str, Any]]) -> Section | None:
    """Example images with the maps of each group's first run."""
    blocks = figs.gallery()
    if not blocks:
        return None
    intro = Paragraph("Each row is one image, each column the map of the first run of a model group, overlaid on "
                      "the image (jet colormap, 50% opacity; red = most salient). The images were chosen by the "
                      "audit for the stated reason.")
    rows = [[Cell(str(k + 1), "num"), Cell(it["reason"]), Cell(it["name"]), Cell(it["dataset"]), Cell(it["label"]),
             Cell(it["path"], "muted")] for k, it in enumerate(items)]
    table = Table(["#", "Reason", "File name", "Dataset", "True class", "Path"], rows,
                  "Images of the gallery, in order.")
    return Section("gallery", "Gallery", [intro, *blocks, table])


def _ranked(value: Any, rank: Any, pct: bool = False) -> Cell:
    if not is_number(value):
        return Cell(MISSING, "num muted")
    shown = fmt_pct(value) if pct else fmt_num(value)
    return Cell(f"{shown} (#{int(rank)})" if is_number(rank) else shown, "num")


def selection_section(summary: Summary, figs: _Figures) -> Section | None:
    """Model selection among equally accurate runs."""
    sel = summary.get("selection") or {}
    rows_in = sel.get("rows") or []
    if not rows_in:
        return None
    source = "Validation accuracy"
    rows = []
    for r in rows_in:
        rows.append([
            Cell(fmt_int(r.get("overall_rank")) if is_number(r.get("overall_rank")) else MISSING, "num"),
            Cell(r["run"]), Cell(r["group"]),
            _ranked(r.get("accuracy"), r.get("rank_accuracy"), pct=True),
            Cell(fmt_pct(r.get("test_accuracy")), "num"),
            _ranked(r.get("auc"), r.get("rank_auc")),
            _ranked(r.get(ENTROPY_NORM), r.get("rank_entropy_norm")),
            _ranked(r.get("stability"), r.get("rank_stability")),
            _ranked(r.get("equivariance"), r.get("rank_equivariance")),
            _ranked(r.get("faithfulness"), r.get("rank_faithfulness")),
            Cell("yes" if r.get("equally_accurate") else "no", "good" if r.get("equally_accurate") else "muted"),
        ])
    header = ["Overall rank", "Run", "Group", f"{source} (#rank)", "Test accuracy", "ROC-AUC", "Entropy (lower)",
              "Stability (higher)", "Equivariance (higher)", "Faithfulness (higher)", "Equally accurate"]
    blocks: list[Block] = [
        Paragraph("Which of several equally accurate models decides in the most desirable way?", "question"),
        Paragraph("Rule: " + (sel.get("rule") or selection_mod.rule_text(1.0, sel.get("accuracy_source")))),
        Paragraph(f"Selected: {sel.get('selected') or MISSING} ({sel.get('reason') or MISSING}).", "note"),
        Paragraph(f"Salience columns are measured on {dataset_label(summary, sel.get('dataset') or '')}. Stability is "
                  "the mean SSIM of the run's maps to those of the other runs of its group; faithfulness is the "
                  "object-mode minus background-mode drop of the true-class probability.", "note"),
        Table(header, rows, "(#k) = rank of the run in that column over all runs (1 = best)."),
    ]
    blocks += figs.block("selection_scatter")
    return Section("selection", "Model selection", blocks)


def comparison_section(table: Table | None, label_a: str, label_b: str) -> Section | None:
    """Side-by-side headline numbers of this audit and another one."""
    if table is None:
        return None
    return Section("comparison", f"Comparison: {label_a} vs {label_b}", [
        Paragraph(f"Headline numbers of this audit ({label_a}) next to those of {label_b}, group by group.",
                  "question"),
        table,
    ])


def metadata_section(summary: Summary) -> Section:
    """Command, versions, settings, datasets and runs of the audit."""
    audit = summary.get("audit") or {}

    def join(values: Any) -> str:
        if isinstance(values, (list, tuple)):
            return ", ".join(str(v) for v in values) or MISSING
        return MISSING if values is None else str(values)

    items = [
        ("Command", join(audit.get("command"))),
        ("Audit format version", join(audit.get("version"))),
        ("Audit created", join(audit.get("created"))),
        ("Profile", _profile(summary)),
        ("Salience method", join(audit.get("method"))),
        ("Measures", join(audit.get("measures"))),
        ("Input size (px)", join(audit.get("input_size"))),
        ("Map size (h x w cells)", " x ".join(str(v) for v in audit["map_size"]) if audit.get("map_size") else MISSING),
        ("Noise amounts", join(audit.get("noise_levels"))),
        ("Transformations", join(audit.get("transform_variants"))),
        ("Rejected images (unreadable, skipped)", join(audit.get("rejected"))),
        ("Report", f"salience-audit {summary.get('tool_version', '')}, generated {summary.get('generated', '')}"),
    ]
    blocks: list[Block] = [KeyValues(items)]
    ds_rows = [[Cell(name), Cell(d.get("role", "")), Cell(fmt_int(d.get("n")), "num"),
                Cell(fmt_int(d.get("n_in_results")), "num")] for name, d in (audit.get("datasets") or {}).items()]
    if ds_rows:
        blocks.append(Table(["Dataset", "Role", "Images (audit.json)", "Images with results"], ds_rows))
    runs = audit.get("runs") or {}
    run_rows = []
    for run, meta in runs.items():
        meta = meta if isinstance(meta, Mapping) else {}
        val = selection_mod.validation_accuracy(meta)
        run_rows.append([Cell(run), Cell(join(meta.get("group"))), Cell(join(meta.get("arch"))),
                         Cell(join(meta.get("seed")), "num"), Cell(fmt_num(val) if is_number(val) else MISSING, "num"),
                         Cell(join(meta.get("path")), "muted")])
    if run_rows:
        blocks.append(Table(["Run", "Group", "Architecture", "Seed", "Validation accuracy", "Path"], run_rows))
    return Section("metadata", "Audit metadata", blocks)


def build_document(
    summary: Summary,
    figures: Sequence[FigureOut],
    gallery_items: Sequence[Mapping[str, Any]] = (),
    comparison: tuple[Table | None, str, str] | None = None,
    title: str = "Salience audit report",
) -> Document:
    """The full report document."""
    figs = _Figures(figures)
    audit = summary.get("audit") or {}
    subtitle = " | ".join(x for x in (
        f"profile: {_profile(summary)}",
        f"method: {audit['method']}" if audit.get("method") else "",
        ("groups: " + ", ".join(summary["groups"])) if summary.get("groups") else "",
        f"created {audit['created']}" if audit.get("created") else "",
    ) if x)
    sections = [
        overview_section(summary, figs),
        detection_section(summary, figs),
        entropy_section(summary, figs),
        noise_section(summary, figs),
        transforms_section(summary, figs),
        stability_section(summary, figs),
        degradation_section(summary, figs),
        human_section(summary, figs),
        *(measure_section(summary, key) for key in extra_sections()),
        other_section(summary),
        gallery_section(summary, figs, gallery_items),
        selection_section(summary, figs),
        comparison_section(*comparison) if comparison else None,
        metadata_section(summary),
    ]
    return Document(title, subtitle, [s for s in sections if s is not None])
