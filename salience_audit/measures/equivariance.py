"""(c) Following geometric transformations: does the focus move with the face?

For each of the 12 non-identity variants T of :func:`salience_audit.perturb.geometry.geometric_variants`
(flips, eight shifts, two quarter turns) and each image x, with U the upscaling of a map to
the input size and q the 8-bit levels:

- ``equivariance`` = SSIM(q(U(S(T x))), T(q(U(S(x))))): the map of the transformed image
  against the transformed map (1 = the focus follows the face);
- ``invariance`` = SSIM(q(U(S(T x))), q(U(S(x)))): against the untransformed map (1 = the
  focus stays at the same place in the frame);
- ``transform_score_change`` = P(Synthetic | T x) - P(Synthetic | x).

The identity variant gets 1, 1 and 0. The report adds variant ``all``, the mean over the
12 variants of each image (:meth:`Transforms.derive`). The transformed images are made once
per batch and shared by every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from salience_audit.measures import similarity
from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import (
    BatchContext,
    Emit,
    Measure,
    Needs,
    Output,
    RunView,
    as_explainer,
    callable_module,
    explain_pass,
    explain_variants,
    images_tensor,
)
from salience_audit.models.scores import synthetic_probability
from salience_audit.perturb import geometry
from salience_audit.salience.normalize import to_uint8_levels, upscale

EQUIVARIANCE = "equivariance"
INVARIANCE = "invariance"
TRANSFORM_SCORE_CHANGE = "transform_score_change"
TRANSFORM_MEASURES: tuple[str, ...] = (EQUIVARIANCE, INVARIANCE, TRANSFORM_SCORE_CHANGE)
ALL = "all"
"""Variant of the derived per-image mean over the non-identity transformations."""


def transform_ssims(
    clean_q: Tensor, moved_q: Tensor, variants: list[geometry.GeometricVariant]
) -> tuple[list[Tensor], list[Tensor]]:
    """Equivariance and invariance SSIMs (``[B]`` each) of every variant.

    ``clean_q [B, H, W]`` are the 8-bit upscaled clean maps, ``moved_q [V * B, H, W]``
    those of the V variants (variant-major). Equivariance compares variant v's map with
    T_v(clean), invariance with the clean map. The window means of each map are computed
    once (the clean map's for all variants, each variant map's for both comparisons).
    """
    b = clean_q.shape[0]
    clean_moments = similarity.ssim_window_moments(clean_q)
    transformed_all = geometry.apply_all(variants, clean_q)
    square = clean_moments.shape[-1] == clean_moments.shape[-2]
    equivariance, invariance = [], []
    for k, variant in enumerate(variants):
        moved = moved_q[k * b : (k + 1) * b]
        moved_moments = similarity.ssim_window_moments(moved)
        transformed = transformed_all[k]
        if square and variant.commutes_with_window_means():
            # Flips and quarter turns permute the windows: their means are T(clean means), exactly.
            transformed_moments = variant.apply(clean_moments)
        else:
            transformed_moments = similarity.ssim_window_moments(transformed)
        equivariance.append(similarity.ssim_uint8_with_moments(moved, transformed, moved_moments, transformed_moments))
        invariance.append(similarity.ssim_uint8_with_moments(moved, clean_q, moved_moments, clean_moments))
    return equivariance, invariance


def _rows(
    clean_maps_up: Tensor, score: Tensor, outs: list[Any], variants: list[geometry.GeometricVariant], input_size: int,
    upscale_fn: Any = upscale,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    clean_q = to_uint8_levels(clean_maps_up)
    moved_maps = torch.cat([out.maps.detach() for out in outs])
    moved_q = to_uint8_levels(upscale_fn(moved_maps, input_size))
    equi, inv = transform_ssims(clean_q, moved_q, variants)
    change = [synthetic_probability(out.logits) - score for out in outs]
    return equi, inv, change


@accepts_numpy
def equivariance(explainer: Any, images: Any, batch_size: int | None = None) -> dict[str, Any]:
    """Equivariance, invariance and score change of an explainer under the 12 transformations, per image.

    ``images`` ``[B, 3, H, W]`` in [0, 1] (square; tensor or numpy array). Returns
    ``variants`` (the 12 names), ``equivariance``, ``invariance`` and
    ``transform_score_change``, each ``[B, 12]`` float64, and ``all`` their per-image means
    over the variants (a dict of three ``[B]`` tensors). Each variant is explained in its own
    pass of B images; with ``batch_size`` the variants are packed into passes of at most that
    many images, as the audit does with its batch setting.
    """
    explain = as_explainer(explainer)
    x = images_tensor(images)
    size = int(x.shape[-1])
    variants = [v for v in geometry.geometric_variants(size) if v.name != "identity"]
    clean = explain_pass(explain, x)
    outs = explain_variants(explain, geometry.apply_all(variants, x), batch_size)
    equi, inv, change = _rows(upscale(clean.maps, size), synthetic_probability(clean.logits), outs, variants, size)
    table = {
        EQUIVARIANCE: torch.stack(equi, dim=1).double().cpu(),
        INVARIANCE: torch.stack(inv, dim=1).double().cpu(),
        TRANSFORM_SCORE_CHANGE: torch.stack(change, dim=1).double().cpu(),
    }
    return {"variants": [v.name for v in variants], **table, ALL: {k: v.mean(dim=1) for k, v in table.items()}}


class Transforms(Measure):
    """(c) Maps of flipped, shifted and rotated images (one salience pass per run and variant)."""

    name = "transforms"
    title = "(c) Following geometric transformations"
    question = "Does the focus move with the face when the image is flipped, shifted or rotated?"
    intro = (
        "Equivariance = SSIM between the map of the transformed image and the transformed map of the original "
        "(high = the focus follows the face). Invariance = SSIM between the map of the transformed image and "
        "the untransformed map (high = the focus stays at the same place in the frame). 'all' is the mean over "
        "the 12 non-identity transformations of each image."
    )
    needs = Needs(passes=12)
    outputs = (
        Output(EQUIVARIANCE, "Equivariance", "Does the focus move with the face?", "SSIM (-1 to 1)",
               "transforms", better="higher", headline_variants=(ALL,), primary=True),
        Output(INVARIANCE, "Invariance", "Does the focus stay at the same place in the frame?",
               "SSIM (-1 to 1)", "transforms", headline_variants=(ALL,),
               note="Descriptive: high invariance with low equivariance means a fixed, frame-bound focus."),
        Output(TRANSFORM_SCORE_CHANGE, "Score change under transforms",
               "Does the score change when the image is flipped, shifted or rotated?",
               "score(Tx) - score(x), probability", "transforms", better="zero", headline_variants=(ALL,)),
    )
    functional = staticmethod(equivariance)
    constant_keys = ("variants",)

    @staticmethod
    def variants(input_size: int) -> list[geometry.GeometricVariant]:
        """The non-identity variants at an input size."""
        return [v for v in geometry.geometric_variants(input_size) if v.name != "identity"]

    def shared_variants(self, ctx: BatchContext) -> dict[str, Tensor]:
        variants = self.variants(ctx.input_size)
        return {f"geometry/{v.name}": moved for v, moved in zip(variants, geometry.apply_all(variants, ctx.images))}

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        variants = self.variants(ctx.input_size)
        outs = run.outputs([f"geometry/{v.name}" for v in variants])
        n = run.maps.shape[0]
        emit(run.name, EQUIVARIANCE, "identity", np.ones(n))
        emit(run.name, INVARIANCE, "identity", np.ones(n))
        emit(run.name, TRANSFORM_SCORE_CHANGE, "identity", np.zeros(n))
        equi, inv, change = _rows(run.maps_up, run.score, outs, variants, ctx.input_size, ctx.conventions.upscale)
        for k, variant in enumerate(variants):
            emit(run.name, EQUIVARIANCE, variant.name, equi[k])
            emit(run.name, INVARIANCE, variant.name, inv[k])
            emit(run.name, TRANSFORM_SCORE_CHANGE, variant.name, change[k])

    def derive(self, rows: pd.DataFrame) -> list[pd.DataFrame]:
        """Variant ``all``: mean over the non-identity transformations of each image and run."""
        sel = rows[rows["measure"].isin(TRANSFORM_MEASURES) & (rows["variant"] != "identity") & (rows["variant"] != ALL)]
        if sel.empty:
            return []
        key = ["measure", "dataset", "index", "group", "run", "path", "label"]
        out = sel.groupby(key, observed=True, sort=False)["value"].mean().reset_index()
        out["variant"] = ALL
        return [out]


callable_module(__name__)  # salience_audit.measures.equivariance(...) calls equivariance() above
