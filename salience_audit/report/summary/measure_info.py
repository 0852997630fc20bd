"""What each measure asks, its unit, which direction is better, and what the original study found.

The report reads this table to label tables and figures and to phrase verdicts. A measure
that is not listed still gets reported, with a generic description (see :func:`info`).

Directions:

- ``"lower"`` / ``"higher"``: smaller / larger values are better;
- ``"zero"``: values close to 0 are better (e.g. a score change under a flip);
- ``None``: descriptive, no value is better in itself.

``study`` is the direction the original study (Crum et al. 2023) found for models trained
with human-salience guidance (CYBORG) *relative to* plain cross-entropy models, where this
project's design notes state one; ``None`` where they do not.

``primary`` marks the measures that answer a section's question directly; the others are
secondary detail (collapsed in the HTML report, left out of the comparison of two audits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Direction = str | None


@dataclass(frozen=True)
class MeasureInfo:
    """Description of one measure (one ``measure`` value of the per-sample rows)."""

    name: str
    title: str
    question: str
    unit: str
    section: str
    better: Direction = None
    better_by_variant: dict[str, Direction] = field(default_factory=dict)
    study: Direction = None
    headline_variants: tuple[str, ...] = ("",)
    note: str = ""
    primary: bool = False

    def direction(self, variant: str = "") -> Direction:
        """Better direction for one variant (a variant-specific direction wins)."""
        return self.better_by_variant.get(variant, self.better)


@dataclass(frozen=True)
class SectionInfo:
    """One section of the report: a family of measures answering one question."""

    key: str
    title: str
    question: str
    intro: str


SECTIONS: tuple[SectionInfo, ...] = (
    SectionInfo(
        "detection",
        "Detection quality",
        "How well do the models separate real from synthetic faces?",
        "Accuracy, ROC-AUC and the ISO/IEC 30107-3 style error rates at the decision threshold, per dataset. "
        "APCER is the fraction of synthetic images accepted as real, BPCER the fraction of real images "
        "rejected as synthetic, ACER their mean.",
    ),
    SectionInfo(
        "entropy",
        "(a) Salience entropy",
        "How focused is the model?",
        "Histogram entropy of the 8-bit salience map, normalised by log2(min(h*w, 256)) so that 0 means a map "
        "with a single value and 1 a map whose cells are spread evenly over as many values as possible. "
        "Lower = the model concentrates on fewer regions.",
    ),
    SectionInfo(
        "noise",
        "(b) Reaction to out-of-set samples",
        "How does the model's focus change on inputs unlike its training data?",
        "Each image is corrupted with salt-and-pepper noise of amount a (fraction of pixel values replaced). "
        "For every a we record the synthetic score, correctness, SSIM of the noisy map to the clean map and "
        "the entropy of the noisy map; the areas under these curves over a summarise them. User-given "
        "out-of-set datasets are compared with the in-set data through the distribution of map entropy.",
    ),
    SectionInfo(
        "transforms",
        "(c) Following geometric transformations",
        "Does the focus move with the face when the image is flipped, shifted or rotated?",
        "Equivariance = SSIM between the map of the transformed image and the transformed map of the original "
        "(high = the focus follows the face). Invariance = SSIM between the map of the transformed image and "
        "the untransformed map (high = the focus stays at the same place in the frame). 'all' is the mean over "
        "the 12 non-identity transformations of each image.",
    ),
    SectionInfo(
        "stability",
        "(d) Stability across training runs",
        "Does the focus stay the same across independent training runs?",
        "For every image, the maps of every pair of runs of the same group (same recipe, different seeds) are "
        "compared with SSIM; each image's value is the mean over pairs. The matrix shows the mean SSIM of each "
        "pair of runs.",
    ),
    SectionInfo(
        "degradation",
        "(e) Salience-guided degradation",
        "Does the model depend on the regions it highlights?",
        "'background' mode blurs where the model does not look, 'object' mode blurs where it looks. A model "
        "whose salience is faithful loses much more confidence in the true class (and accuracy) in object "
        "mode than in background mode. Faithfulness = object-mode drop minus background-mode drop of the "
        "true-class probability (labelled images only). Deletion / insertion curves remove / restore pixels "
        "in order of salience, with a random-order control.",
    ),
    SectionInfo(
        "human",
        "Agreement with human salience",
        "Does the model look where humans look?",
        "SSIM and Spearman rank correlation between the model's map and the human annotation, for the images "
        "that have one.",
    ),
)


_TRANSFORM_HEADLINE = ("all",)
_DEGRADE_MODES = ("background", "object")

MEASURES: dict[str, MeasureInfo] = {
    m.name: m
    for m in (
        # detection
        MeasureInfo("score", "Synthetic score", "What probability of 'synthetic' does the model give?",
                    "probability (0-1)", "detection"),
        MeasureInfo("correct", "Accuracy", "How often is the model right?", "fraction correct (0-1)",
                    "detection", better="higher", primary=True),
        # (a) entropy
        MeasureInfo("entropy_norm", "Normalised salience entropy", "How focused is the model?",
                    "normalised entropy (0-1)", "entropy", better="lower", study="lower",
                    note="The headline entropy number.", primary=True),
        MeasureInfo("entropy", "Salience entropy (bits)", "How many bits does the map's value histogram carry?",
                    "bits", "entropy", better="lower", study="lower"),
        MeasureInfo("spatial_entropy", "Spatial entropy", "How evenly is the salience mass spread over the map?",
                    "normalised entropy (0-1)", "entropy", better="lower",
                    note="Entropy of S / sum(S) over the map cells; a second variant, not the headline."),
        # (b) noise
        MeasureInfo("noise_score", "Score under noise", "How does the synthetic score move as noise grows?",
                    "probability (0-1)", "noise", headline_variants=()),
        MeasureInfo("noise_correct", "Accuracy under noise", "Does the model stay right as noise grows?",
                    "fraction correct (0-1)", "noise", better="higher", headline_variants=()),
        MeasureInfo("noise_ssim", "Map SSIM to the clean map under noise",
                    "Does the focus stay put when the input is corrupted?", "SSIM (-1 to 1)", "noise",
                    better="higher", headline_variants=()),
        MeasureInfo("noise_entropy", "Map entropy under noise", "Does the focus spread out on corrupted input?",
                    "normalised entropy (0-1)", "noise", headline_variants=()),
        MeasureInfo("noise_auc_score", "Area under the score-vs-noise curve",
                    "How much synthetic score does the model give over all noise amounts?",
                    "probability x amount (0-1)", "noise", primary=True),
        MeasureInfo("noise_auc_ssim", "Area under the SSIM-vs-noise curve",
                    "How well does the focus survive noise overall?", "SSIM x amount (-1 to 1)", "noise",
                    better="higher", primary=True),
        MeasureInfo("noise_auc_entropy", "Area under the entropy-vs-noise curve",
                    "How spread out is the focus over all noise amounts?", "entropy x amount (0-1)", "noise"),
        # (c) transforms
        MeasureInfo("equivariance", "Equivariance", "Does the focus move with the face?", "SSIM (-1 to 1)",
                    "transforms", better="higher", headline_variants=_TRANSFORM_HEADLINE, primary=True),
        MeasureInfo("invariance", "Invariance", "Does the focus stay at the same place in the frame?",
                    "SSIM (-1 to 1)", "transforms", headline_variants=_TRANSFORM_HEADLINE,
                    note="Descriptive: high invariance with low equivariance means a fixed, frame-bound focus."),
        MeasureInfo("transform_score_change", "Score change under transforms",
                    "Does the score change when the image is flipped, shifted or rotated?",
                    "score(Tx) - score(x), probability", "transforms", better="zero",
                    headline_variants=_TRANSFORM_HEADLINE),
        # (d) stability
        MeasureInfo("stability_ssim", "Cross-run stability (SSIM)",
                    "Does the focus stay the same across training runs?", "SSIM (-1 to 1)", "stability",
                    better="higher", study="higher", primary=True),
        MeasureInfo("stability_spearman", "Cross-run stability (Spearman)",
                    "Do runs rank the map cells in the same order?", "rank correlation (-1 to 1)", "stability",
                    better="higher"),
        MeasureInfo("stability_iou", "Cross-run stability (top-k IoU)",
                    "Do runs highlight the same most salient cells?", "IoU (0-1)", "stability", better="higher"),
        # (e) degradation
        MeasureInfo("degrade_faithfulness", "Degradation faithfulness",
                    "Does blurring what the model looks at hurt more than blurring the rest?",
                    "probability (object drop - background drop)", "degradation", better="higher", primary=True),
        MeasureInfo("degrade_true_score_drop", "True-class probability drop",
                    "How much confidence in the true class is lost when part of the image is blurred?",
                    "probability drop", "degradation", better_by_variant={"background": "lower", "object": "higher"},
                    headline_variants=_DEGRADE_MODES,
                    note="Derived: -score change for synthetic images, +score change for real ones.", primary=True),
        MeasureInfo("degrade_accuracy_change", "Accuracy change under degradation",
                    "How much accuracy is lost when part of the image is blurred?",
                    "accuracy change (fraction, -1 to 1)", "degradation",
                    better_by_variant={"background": "zero", "object": "lower"}, headline_variants=_DEGRADE_MODES,
                    primary=True),
        MeasureInfo("degrade_score_change", "Score change under degradation",
                    "How does the synthetic score move when part of the image is blurred?",
                    "score(degraded) - score(clean), probability", "degradation", headline_variants=()),
        MeasureInfo("degrade_correct", "Accuracy after degradation", "How often is the model right after blurring?",
                    "fraction correct (0-1)", "degradation",
                    better_by_variant={"background": "higher", "object": "lower"}, headline_variants=()),
        MeasureInfo("degrade_ssim", "Map SSIM after degradation", "Does the map survive the degradation?",
                    "SSIM (-1 to 1)", "degradation", headline_variants=_DEGRADE_MODES),
        MeasureInfo("deletion_auc", "Deletion AUC",
                    "Does the score fall fast when the most salient pixels are removed first?",
                    "score x fraction removed (0-1)", "degradation", better="lower", primary=True),
        MeasureInfo("insertion_auc", "Insertion AUC",
                    "Does the score rise fast when the most salient pixels are restored first?",
                    "score x fraction restored (0-1)", "degradation", better="higher", primary=True),
        MeasureInfo("deletion_auc_random", "Deletion AUC (random order)", "Control: deletion in random order.",
                    "score x fraction removed (0-1)", "degradation", headline_variants=()),
        MeasureInfo("insertion_auc_random", "Insertion AUC (random order)", "Control: insertion in random order.",
                    "score x fraction restored (0-1)", "degradation", headline_variants=()),
        # human agreement
        MeasureInfo("human_ssim", "Agreement with human maps (SSIM)", "Does the model look where humans look?",
                    "SSIM (-1 to 1)", "human", better="higher", primary=True),
        MeasureInfo("human_spearman", "Agreement with human maps (Spearman)",
                    "Does the model rank regions like humans do?", "rank correlation (-1 to 1)", "human",
                    better="higher"),
    )
}

#: Measures derived by the report from the raw rows (see :mod:`salience_audit.report.summary.derived`).
DERIVED_MEASURES: tuple[str, ...] = ("degrade_faithfulness", "degrade_true_score_drop", "degrade_accuracy_change")

#: Measures whose rows are per pair of runs (``run`` = ``"runA|runB"``).
PAIRWISE_MEASURES: tuple[str, ...] = ("stability_ssim", "stability_spearman", "stability_iou")

#: Noise-curve measures (variants ``a=<amount>``) and the AUC measure summarising each.
NOISE_CURVES: dict[str, str] = {
    "noise_score": "noise_auc_score",
    "noise_correct": "",
    "noise_ssim": "noise_auc_ssim",
    "noise_entropy": "noise_auc_entropy",
}


def info(name: str) -> MeasureInfo:
    """The description of ``name``; a generic one for measures this table does not know."""
    if name in MEASURES:
        return MEASURES[name]
    return MeasureInfo(name, name, f"Values of the measure '{name}'.", "value", "other")


def section(key: str) -> SectionInfo | None:
    """The section description for ``key`` (None for unknown keys)."""
    return next((s for s in SECTIONS if s.key == key), None)


def direction_text(direction: Direction) -> str:
    """Human wording of a better-direction."""
    return {"lower": "lower is better", "higher": "higher is better", "zero": "closer to 0 is better"}.get(
        direction or "", "descriptive (no better direction)"
    )


def study_text(study: Direction) -> str:
    """Human wording of the original study's finding for guided vs plain models."""
    if study is None:
        return "not stated"
    return f"guided {study} than plain"


def measure_table() -> dict[str, dict[str, object]]:
    """JSON-ready description of every known measure (for ``summary.json``)."""
    return {
        name: {
            "title": m.title,
            "question": m.question,
            "unit": m.unit,
            "section": m.section,
            "better": m.better,
            "better_by_variant": dict(m.better_by_variant),
            "study_guided_vs_plain": m.study,
            "headline_variants": list(m.headline_variants),
            "note": m.note,
            "primary": m.primary,
        }
        for name, m in MEASURES.items()
    }
