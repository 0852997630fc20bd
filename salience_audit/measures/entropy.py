"""Salience entropy: how focused a map is (lower = more focused).

Maps are ``[B, h, w]`` tensors in [0, 1]; every function returns a float64 ``[B]``
tensor on the input device, computed for the whole batch at once.

- :func:`histogram_entropy` - the headline measure: entropy in bits of the histogram of
  the 8-bit map q = floor(255 S), identical to ``skimage.measure.shannon_entropy(q)``.
- :func:`normalized_histogram_entropy` - the same divided by its maximum
  log2(min(h*w, 256)).
- :func:`spatial_entropy` - a second, clearly distinct variant: entropy of the map
  itself taken as a distribution over cells, P = S / sum(S), normalised by log2(h*w).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import BatchContext, Emit, Measure, Needs, Output, RunView, as_tensor, callable_module
from salience_audit.salience.normalize import to_uint8_levels

ENTROPY = "entropy"
ENTROPY_NORM = "entropy_norm"
SPATIAL_ENTROPY = "spatial_entropy"

#: Number of 8-bit levels of q.
N_LEVELS = 256
_LN2 = math.log(2.0)


def _check_maps(maps: Tensor, name: str) -> None:
    if maps.dim() != 3:
        raise ValueError(f"{name} expects maps of shape [B, h, w], got {tuple(maps.shape)}")


def _entropy_bits(p: Tensor) -> Tensor:
    """-sum_k p_k log2 p_k over the last dimension, with 0 log 0 = 0 (float64)."""
    return -torch.special.xlogy(p, p).sum(dim=-1) / _LN2


@accepts_numpy
def level_histogram(maps01: Tensor) -> Tensor:
    """Counts ``[B, 256]`` (int64) of the 8-bit levels q = floor(255 S) of each map.

    One ``bincount`` over q + 256 * b (b = map index) fills every histogram at once.
    """
    _check_maps(maps01, "level_histogram")
    q = to_uint8_levels(maps01).flatten(start_dim=1)
    batch = q.shape[0]
    offsets = torch.arange(batch, device=q.device, dtype=torch.int64).unsqueeze(1) * N_LEVELS
    counts = torch.bincount((q + offsets).flatten(), minlength=batch * N_LEVELS)
    return counts.view(batch, N_LEVELS)


@accepts_numpy
def histogram_entropy(maps01: Tensor) -> Tensor:
    """Histogram entropy in bits of the 8-bit version of each map.

    H = - sum_k p_k log2 p_k over the distinct values k of q = floor(255 S), with p_k the
    fraction of the h*w cells holding k. Equal to ``skimage.measure.shannon_entropy(q)``.
    A constant map gives 0; the maximum is log2(min(h*w, 256)). Returns ``[B]`` float64.
    """
    counts = level_histogram(maps01).to(torch.float64)
    n_cells = maps01.shape[-2] * maps01.shape[-1]
    return _entropy_bits(counts / n_cells)


@accepts_numpy
def normalized_histogram_entropy(maps01: Tensor) -> Tensor:
    """Histogram entropy divided by its maximum: H / log2(min(h*w, 256)), in [0, 1].

    For 7x7 maps the divisor is log2(49) = 5.6147. A 1x1 map (divisor log2(1) = 0) can
    hold only one value and is defined to give 0. Returns ``[B]`` float64.
    """
    entropy = histogram_entropy(maps01)
    n_cells = maps01.shape[-2] * maps01.shape[-1]
    n_values = min(n_cells, N_LEVELS)
    if n_values <= 1:
        return torch.zeros_like(entropy)
    return entropy / math.log2(n_values)


@accepts_numpy
def spatial_entropy(maps01: Tensor) -> Tensor:
    """Normalised spatial entropy of each map: -sum_c P_c log2 P_c / log2(h*w), P = S / sum(S).

    The map itself is read as a probability distribution over its h*w cells (a second
    variant, distinct from the headline :func:`histogram_entropy`). 1 means salience spread
    evenly over all cells, 0 all salience in one cell. Negative values are clamped to 0;
    an all-zero map (min-max normalisation of a constant map) has no distribution and is
    defined to give 0, as is a 1x1 map. Computed on S, not on the 8-bit q. Returns ``[B]``
    float64.
    """
    _check_maps(maps01, "spatial_entropy")
    mass = maps01.to(torch.float64).clamp(min=0.0).flatten(start_dim=1)
    n_cells = mass.shape[1]
    if n_cells <= 1:
        return torch.zeros(mass.shape[0], dtype=torch.float64, device=mass.device)
    total = mass.sum(dim=1, keepdim=True)
    p = mass / torch.where(total > 0, total, torch.ones_like(total))
    return _entropy_bits(p) / math.log2(n_cells)


@accepts_numpy
def entropy(maps: Tensor | np.ndarray) -> dict[str, Tensor]:
    """The three entropies of maps ``[B, h, w]`` in [0, 1] (tensor or numpy array), each ``[B]`` float64.

    Keys: ``entropy`` (:func:`histogram_entropy`, bits), ``entropy_norm``
    (:func:`normalized_histogram_entropy`, the headline, 0-1) and ``spatial_entropy``
    (:func:`spatial_entropy`, 0-1).
    """
    m = as_tensor(maps, "maps")
    return {
        ENTROPY: histogram_entropy(m),
        ENTROPY_NORM: normalized_histogram_entropy(m),
        SPATIAL_ENTROPY: spatial_entropy(m),
    }


class Entropy(Measure):
    """(a) How focused is the model: entropy of each clean map (no extra pass)."""

    name = "entropy"
    title = "(a) Salience entropy"
    question = "How focused is the model?"
    intro = (
        "Histogram entropy of the 8-bit salience map, normalised by log2(min(h*w, 256)) so that 0 means a map "
        "with a single value and 1 a map whose cells are spread evenly over as many values as possible. "
        "Lower = the model concentrates on fewer regions."
    )
    finding = "Models trained with human salience (CYBORG) had lower entropy than cross-entropy models."
    needs = Needs(passes=0)
    outputs = (
        Output(ENTROPY_NORM, "Normalised salience entropy", "How focused is the model?",
               "normalised entropy (0-1)", "entropy", better="lower", study="lower",
               note="The headline entropy number.", primary=True),
        Output(ENTROPY, "Salience entropy (bits)", "How many bits does the map's value histogram carry?",
               "bits", "entropy", better="lower", study="lower"),
        Output(SPATIAL_ENTROPY, "Spatial entropy", "How evenly is the salience mass spread over the map?",
               "normalised entropy (0-1)", "entropy", better="lower",
               note="Entropy of S / sum(S) over the map cells; a second variant, not the headline."),
    )
    functional = staticmethod(entropy)

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        values = entropy(run.maps)
        for key in (ENTROPY, ENTROPY_NORM, SPATIAL_ENTROPY):
            emit(run.name, key, "", values[key])


callable_module(__name__)  # salience_audit.measures.entropy(...) calls entropy() above
