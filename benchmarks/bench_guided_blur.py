"""Benchmark: batched ``guided_blur`` against the slow per-level scipy reference (CPU).

The reference is the direct reading of measure (e): for every distinct blur level of an
image, blur the whole image per channel with ``scipy.ndimage.gaussian_filter`` at that
level's sigma and copy the pixels of that level. Both run in the same process on the same
64 images (224 x 224 x 3; skimage sample images and LFW faces, with smooth CAM-like maps).

Run:  .venv/bin/python benchmarks/bench_guided_blur.py
Writes benchmarks/results/guided_blur.json and prints a table. If the reference would take
longer than ``--ref-budget`` seconds, it is timed on the first images only and its rate is
extrapolated per image (the output says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from salience_audit.perturb.blur import guided_blur
from salience_audit.salience.normalize import upscale

# The slow reference is the one the tests check against (one per distinct level, scipy).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_perturb_degradation import _reference_guided_blur as reference_guided_blur  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "guided_blur.json"


def load_images(n: int, size: int) -> torch.Tensor:
    """n real images [n, 3, size, size] in [0, 1]: skimage colour samples, then LFW faces."""
    from skimage import data, transform

    colour = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.retina()]
    colour.append(data.immunohistochemistry())
    images = [transform.resize(im, (size, size), anti_aliasing=True) for im in colour]
    faces = data.lfw_subset()
    for face in faces[: max(0, n - len(images))]:
        up = transform.resize(face, (size, size), order=3).clip(0.0, 1.0)
        images.append(np.repeat(up[..., None], 3, axis=2))
    stack = np.stack(images[:n]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stack)).float()


def blob_maps(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth CAM-like maps: one or two Gaussian bumps on a 7x7 grid, bicubic-upscaled."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    centres = torch.rand(n, 2, 2, generator=g) * 6.0
    widths = 1.0 + 4.0 * torch.rand(n, 2, generator=g)
    second = (torch.rand(n, generator=g) < 0.5).float() * torch.rand(n, generator=g)
    dist2 = (yy - centres[:, :, 0, None, None]) ** 2 + (xx - centres[:, :, 1, None, None]) ** 2
    bump = torch.exp(-dist2 / widths[..., None, None])
    small = bump[:, 0] + second[:, None, None] * bump[:, 1]
    lo = small.amin(dim=(1, 2), keepdim=True)
    hi = small.amax(dim=(1, 2), keepdim=True)
    return upscale((small - lo) / (hi - lo), size)


def bench_mode(x: torch.Tensor, maps: torch.Tensor, mode: str, chunk: int, ref_budget: float) -> dict:
    """Time both in the same window: the reference runs in chunks of ``chunk`` images and the
    batched version is timed on the whole batch before each chunk and after the last one, so
    load changes on a shared machine hit both alike (ours: median of those calls)."""
    n = x.shape[0]
    start = time.perf_counter()
    ours = guided_blur(x, maps, mode=mode)  # cold: builds the cached operators / coefficients
    cold = time.perf_counter() - start

    def time_ours() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        guided_blur(x, maps, mode=mode)
        return time.perf_counter() - t0, time.process_time() - c0

    x64 = x.double().numpy()
    m64 = maps.double().numpy()
    ours_times = [time_ours()]
    diffs = []
    ref_elapsed = 0.0
    ref_cpu = 0.0
    done = 0
    while done < n and (done == 0 or ref_elapsed <= ref_budget):
        t0, c0 = time.perf_counter(), time.process_time()
        refs = [reference_guided_blur(x64[i], m64[i], mode) for i in range(done, min(n, done + chunk))]
        ref_elapsed += time.perf_counter() - t0
        ref_cpu += time.process_time() - c0
        for k, ref in enumerate(refs):
            diffs.append(np.abs(ours[done + k].double().numpy() - ref))
        done += len(refs)
        ours_times.append(time_ours())
    ours_s = statistics.median(t for t, _ in ours_times)
    ours_cpu = statistics.median(c for _, c in ours_times)
    ref_per_image = ref_elapsed / done
    ref_cpu_per_image = ref_cpu / done
    diff = np.stack(diffs)
    return {
        "mode": mode,
        "images": n,
        "ours_seconds": ours_s,
        "ours_seconds_all_calls": [t for t, _ in ours_times],
        "ours_cpu_seconds": ours_cpu,
        "ours_seconds_cold": cold,
        "ours_images_per_s": n / ours_s,
        "reference_images_timed": done,
        "reference_extrapolated": done < n,
        "reference_seconds": ref_per_image * n,
        "reference_images_per_s": 1.0 / ref_per_image,
        "reference_cpu_seconds": ref_cpu_per_image * n,
        "speedup": ref_per_image * n / ours_s,
        "speedup_cpu_time": ref_cpu_per_image * n / ours_cpu,
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff_x255": float(diff.mean() * 255),
        "max_abs_diff_x255": float(diff.max() * 255),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--chunk", type=int, default=8, help="reference images between two timed batched calls"
    )
    parser.add_argument("--ref-budget", type=float, default=180.0, help="seconds per mode for the reference")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    x = load_images(args.batch, args.size)
    maps = blob_maps(args.batch, args.size)
    load_before = os.getloadavg()
    rows = [bench_mode(x, maps, mode, args.chunk, args.ref_budget) for mode in ("background", "object")]
    load_after = os.getloadavg()

    header = (
        f"{'mode':<11} {'ours img/s':>10} {'ref img/s':>10} {'speed-up':>9} {'(cpu-time)':>10} "
        f"{'mean|d|*255':>12} {'max|d|*255':>11}"
    )
    print(
        f"guided_blur vs scipy reference: {args.batch} images {args.size}x{args.size}x3, CPU, "
        f"torch threads={args.threads}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        note = ""
        if r["reference_extrapolated"]:
            note = f"  (reference timed on {r['reference_images_timed']} images, extrapolated per image)"
        print(
            f"{r['mode']:<11} {r['ours_images_per_s']:>10.1f} {r['reference_images_per_s']:>10.2f} "
            f"{r['speedup']:>8.1f}x {r['speedup_cpu_time']:>9.1f}x "
            f"{r['mean_abs_diff_x255']:>12.3f} {r['max_abs_diff_x255']:>11.3f}{note}"
        )
    print("speed-up: wall clock; (cpu-time): ratio of process CPU seconds, all threads counted")
    print("(ours: median of the warm calls interleaved with the reference; first call incl. caches: "
          + ", ".join(f"{r['mode']} {r['ours_seconds_cold']:.2f}s" for r in rows)
          + f"; load average {load_before[0]:.2f} -> {load_after[0]:.2f})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "guided_blur",
        "config": {
            "batch": args.batch,
            "size": args.size,
            "channels": 3,
            "device": "cpu",
            "threads": args.threads,
            "chunk": args.chunk,
            "ref_budget_s": args.ref_budget,
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
