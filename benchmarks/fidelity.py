"""Fidelity: how far each ``default`` convention is from the original study's (profile ``study``).

Every number in docs/fidelity.md comes from this script. It runs on the CPU, offline, on
real images bundled with scikit-image (6 colour samples and 2 LFW faces, 224 x 224) and on
randomly initialised torchvision DenseNet-121 / ResNet-50 (seeded; no trained weights are
needed to show a convention's effect, and none are downloaded):

1. Grad-CAM on the 7x7 maps: study (gradients before DenseNet's in-place ReLU) vs default;
2. upscaling to 224 px: Pillow bicubic of floor(255 S) vs torch bicubic of S, floored after;
3. object-mode blur levels: 10 (255 - G) / (255 - min G) vs 10 - 10 G / max G (same map, float G),
   and the blur sigma at the map's peak;
4. uint8 filtering: levels and degraded images with uint8-truncating filters vs the same
   computation in float64;
5. the noise script's 8-bit round trip, and our SSIM of 7x7 maps against the study's skimage call;
6. the entropy of the study's example map (both profiles);
7. time of the study's guided blur next to the default one, in the same run.

Run:  .venv/bin/python benchmarks/fidelity.py   (writes benchmarks/results/fidelity.json, prints a table)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from salience_audit.audit.conventions import Conventions
from salience_audit.measures import entropy, similarity
from salience_audit.perturb.noise import uint8_round_trip
from salience_audit.perturb.study_blur import study_guided_blur, study_level_indices, study_level_sigma
from salience_audit.models.audit_model import AuditModel
from salience_audit.salience.extract import SalienceExtractor
from salience_audit.salience.normalize import to_uint8_levels

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fidelity.json"
EXAMPLE_MAP = ROOT / "tests" / "data" / "study-example-map.json"
SIZE = 224


def load_images(size: int = SIZE) -> torch.Tensor:
    """8 real images [8, 3, size, size] in [0, 1], quantised to 8 bits (as read from image files)."""
    from skimage import data, transform

    colour = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.retina(), data.immunohistochemistry()]
    images = [transform.resize(im, (size, size), anti_aliasing=True) for im in colour]
    for face in data.lfw_subset()[:2]:
        images.append(np.repeat(transform.resize(face, (size, size), order=3).clip(0, 1)[..., None], 3, axis=2))
    stack = np.round(np.stack(images).transpose(0, 3, 1, 2) * 255) / 255
    return torch.from_numpy(np.ascontiguousarray(stack)).float()


def gradcam(arch: str, x: torch.Tensor, seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    model = AuditModel.from_arch(arch, num_classes=2).eval()
    maps = {}
    for profile in ("default", "study"):
        conv = Conventions(profile)  # type: ignore[arg-type]
        with torch.no_grad():
            maps[profile] = SalienceExtractor(model, "gradcam", grad_before_inplace=conv.grad_before_inplace)(x).maps
    qd, qs = to_uint8_levels(maps["default"]), to_uint8_levels(maps["study"])
    ent = (entropy.histogram_entropy(maps["default"]) - entropy.histogram_entropy(maps["study"])).abs()
    return {
        "maps": maps,
        "cells_differing": int((qd != qs).sum()),
        "cells": int(qd.numel()),
        "max_level_difference": int((qd - qs).abs().max()),
        "max_float_difference": float((maps["default"] - maps["study"]).abs().max()),
        "max_entropy_difference_bits": float(ent.max()),
    }


def upscaling(maps: torch.Tensor) -> dict[str, float]:
    study = to_uint8_levels(Conventions("study").upscale(maps, SIZE))
    default = to_uint8_levels(Conventions("default").upscale(maps, SIZE))
    ssim = similarity.ssim_maps(study.float() / 255, default.float() / 255)
    diff = (study - default).abs()
    return {
        "max_level_difference": int(diff.max()),
        "max_level_difference_per_map": [int(v) for v in diff.flatten(1).max(1).values],
        "mean_level_difference": float(diff.float().mean()),
        "min_ssim": float(ssim.min()),
    }


def object_levels(maps_up: torch.Tensor) -> dict[str, object]:
    """Same map, float G = G_5(c): the study's L = 10 (255 - G) / (255 - min G) against 10 - 10 G / max G."""
    c = to_uint8_levels(maps_up).double().numpy()
    max_diff, share, peak_sigma = [], [], []
    for cam in c:
        g = ndi.gaussian_filter(cam, 5)
        study = 10 * (255 - g) / (255 - g.min())
        default = 10 - 10 * g / g.max()
        d = np.abs(np.round(study, 1) - np.round(default, 1))
        max_diff.append(float(np.abs(study - default).max()))
        share.append(float((d > 0.05).mean()))
        peak = np.unravel_index(np.argmax(g), g.shape)
        peak_sigma.append(float(0.001 * (10 - np.round(study[peak], 1)) ** 4))
    return {
        "max_level_difference": max(max_diff),
        "share_of_pixels_on_another_level": [min(share), max(share)],
        "study_sigma_at_peak": [min(peak_sigma), max(peak_sigma)],
        "default_sigma_at_peak": 10.0,
    }


def _float_study_blur(image: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The study's per-level blur with float64 filters (no truncation), levels given."""
    out = image.astype(np.float64).copy()
    for level in np.unique(k):
        sigma = study_level_sigma(int(level)) if level >= 0 else 0.0
        if sigma == 0.0:
            continue
        where = k == level
        for ch in range(image.shape[0]):
            out[ch][where] = ndi.gaussian_filter(image[ch].astype(np.float64), sigma)[where]
    return out


def uint8_filtering(x: torch.Tensor, maps_up: torch.Tensor) -> dict[str, object]:
    q = torch.round(x * 255).double().numpy()
    c = to_uint8_levels(maps_up)
    result: dict[str, object] = {}
    for mode in ("background", "object"):
        k_u8 = study_level_indices(c, mode).numpy()
        m = c.double().numpy() if mode == "background" else 255.0 - c.double().numpy()
        k_float = []
        for mi in m:
            g = ndi.gaussian_filter(mi, 5)
            k_float.append(np.rint(10 * g / (g.max() / 10)))
        k_float = np.stack(k_float)
        moved = (k_u8 != k_float).reshape(len(m), -1).mean(axis=1)
        study = torch.round(study_guided_blur(x, maps_up, mode) * 255).double().numpy()
        floats = np.stack([_float_study_blur(im, ki) for im, ki in zip(q, k_u8)])
        darker = (floats - study).reshape(len(m), -1).mean(axis=1)
        result[mode] = {
            "share_of_pixels_on_another_level": [float(moved.min()), float(moved.max())],
            "mean_darkening_levels": [float(darker.min()), float(darker.max())],
        }
    return result


def whole_degradation(x: torch.Tensor, maps: torch.Tensor) -> dict[str, object]:
    out: dict[str, object] = {}
    for mode in ("background", "object"):
        s = Conventions("study")
        d = Conventions("default")
        t0 = time.perf_counter()
        ys = s.guided_blur(x, s.upscale(maps, SIZE), mode)
        t_study = time.perf_counter() - t0
        t0 = time.perf_counter()
        yd = d.guided_blur(x, d.upscale(maps, SIZE), mode)
        t_default = time.perf_counter() - t0
        diff = (ys - yd).abs() * 255
        out[mode] = {
            "mean_abs_difference_levels": float(diff.mean()),
            "max_abs_difference_levels": float(diff.max()),
            "seconds_per_image_study": t_study / x.shape[0],
            "seconds_per_image_default": t_default / x.shape[0],
        }
    return out


def noise_round_trip(x: torch.Tensor) -> dict[str, object]:
    levels = torch.arange(256, dtype=torch.float64) / 255
    moved_levels = int((torch.round(uint8_round_trip(levels) * 255) != torch.arange(256)).sum())
    changed = (torch.round(uint8_round_trip(x) * 255) != torch.round(x * 255)).double().mean()
    return {"levels_lowered": moved_levels, "share_of_image_values_lowered": float(changed)}


def pairwise_ssim(maps: torch.Tensor) -> dict[str, float]:
    """Our SSIM of 7x7 maps against the study's call, skimage ``structural_similarity(q1, q2)`` on uint8."""
    from skimage.metrics import structural_similarity

    q = to_uint8_levels(maps).numpy().astype(np.uint8)
    worst = 0.0
    for i in range(len(q)):
        for j in range(i + 1, len(q)):
            ours = float(similarity.ssim_maps(maps[i : i + 1], maps[j : j + 1])[0])
            worst = max(worst, abs(ours - structural_similarity(q[i], q[j])))
    return {"pairs": len(q) * (len(q) - 1) // 2, "max_abs_difference": worst}


def example_entropy() -> dict[str, float]:
    levels = json.loads(EXAMPLE_MAP.read_text(encoding="utf-8"))["levels"]
    maps = torch.tensor(levels, dtype=torch.float32).unsqueeze(0) / 255
    return {p: float(entropy.histogram_entropy(maps)[0]) for p in ("default", "study")}


def main() -> int:
    torch.set_num_threads(1)
    start = time.perf_counter()
    x = load_images()
    dense = gradcam("densenet121", x, seed=0)
    res = gradcam("resnet50", x, seed=0)
    maps = dense["maps"]["study"]  # type: ignore[index]
    maps_up = Conventions("study").upscale(maps, SIZE)
    report = {
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "note": "2 shared CPU cores; times are noisy, compare the two columns of one run"},
        "images": int(x.shape[0]),
        "gradcam_densenet121": {k: v for k, v in dense.items() if k != "maps"},
        "gradcam_resnet50": {k: v for k, v in res.items() if k != "maps"},
        "upscaling": upscaling(torch.cat([maps, res["maps"]["study"]])),  # type: ignore[index]
        "object_levels": object_levels(maps_up),
        "uint8_filtering": uint8_filtering(x, maps_up),
        "degradation_study_vs_default": whole_degradation(x, maps),
        "noise_round_trip": noise_round_trip(x),
        "stability_ssim_vs_skimage": pairwise_ssim(maps),
        "example_map_entropy_bits": example_entropy(),
    }
    report["seconds"] = time.perf_counter() - start
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
