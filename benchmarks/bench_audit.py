"""Benchmark of the audit: throughput per measure, model-pass efficiency, peak memory, and Quantus.

What each part measures (all on CPU, in this process unless said otherwise):

(a) Throughput: images per second of each measure's function (``sa.measures.entropy``,
    ``noise_reaction``, ``equivariance``, ``stability``, ``degradation``: the same code the
    audit's batch loop runs for that measure, clean pass included) on image batches already in
    memory (no decoding), for ResNet-50 at 224 px and the demo's small CNN at 64 px (random
    initialisation: the cost does not depend on the weights). Stability uses 2 runs, the others 1.
(b) Model-pass efficiency: the time of the bare Grad-CAM passes the measure needs (forward
    with a hook on the CAM layer + ``autograd.grad`` of the target logit to that layer, in
    plain PyTorch, same batches, same batch size) divided by the time the measure takes in
    (a). 1.0 means the pipeline adds nothing to the model passes. Passes per image and run:
    entropy 1, noise 1 + 7 levels, transforms 13, degradation 1 + 2 modes, stability 1 per run.
(c) Peak memory: ``VmHWM`` (peak resident set) of a fresh subprocess running a whole
    ``sa.run_audit`` (entropy + stability, 2 small-CNN runs, 64 px PNG files, results written)
    for two dataset sizes; and of a subprocess summarising those results
    (``salience-audit report``: summary and report).
(e) Before / after (``--baseline DIR``, a checkout of an earlier version): the same whole
    audits (small CNN and ResNet-50, 2 runs, the default measures) run by the earlier package
    and by this one, in alternating fresh subprocesses, with the rows of both compared.
(d) Quantus (if installed): its ``Complexity`` (entropy of |a| / sum |a|) against our spatial
    entropy on the same model, images and maps, and its ``PixelFlipping`` / ``RegionPerturbation``
    against our deletion curves and guided degradation, with the throughput ratio.

Run:  .venv/bin/python benchmarks/bench_audit.py            (about 10-15 min on 2 busy cores)
      .venv/bin/python benchmarks/bench_audit.py --quick    (a smoke run, about 2 min)
Writes benchmarks/results/audit.json and the tables between the bench_audit markers of
docs/benchmarks.md (the text around them is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import salience_audit as sa
from salience_audit import AuditConfig, AuditModel, SalienceExtractor

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "audit.json"
DOC = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_audit:begin -->", "<!-- bench_audit:end -->"

MEASURES = ("entropy", "noise", "transforms", "stability", "degradation")
PASSES = {"entropy": 1, "noise": 8, "transforms": 13, "stability": 1, "degradation": 3}
"""Grad-CAM passes per image and run that each measure needs (clean pass included)."""


# ----------------------------------------------------------------------------- helpers


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import quantus

        quantus_version = quantus.__version__
    except Exception as err:  # noqa: BLE001 - report why, whatever it is
        quantus_version = f"not available ({type(err).__name__}: {err})"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "quantus": quantus_version,
        "load_average_start": list(os.getloadavg()),
    }


def faces(n: int, size: int) -> Tensor:
    """``n`` real face images ``[n, 3, size, size]`` in [0, 1] (scikit-image's LFW subset, cycled with flips)."""
    from skimage import data

    lfw = torch.from_numpy(np.asarray(data.lfw_subset(), dtype=np.float32))  # [100, 25, 25]
    reps = -(-n // len(lfw))
    stack = torch.cat([lfw if k % 2 == 0 else lfw.flip(-1) for k in range(reps)])[:n]
    up = torch.nn.functional.interpolate(stack[:, None], size=(size, size), mode="bicubic", align_corners=False)
    return up.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def models(arch: str, n: int) -> list[AuditModel]:
    """``n`` randomly initialised models (seeds 0..n-1) in eval mode."""
    out = []
    for k in range(n):
        torch.manual_seed(k)
        out.append(AuditModel.from_arch(arch, weights=None, name=f"{arch}-seed{k}").eval())
    return out


class Clock:
    """Wall-clock and process CPU seconds of a block."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - t0
            self.cpu += time.process_time() - c0


def batches(x: Tensor, size: int) -> list[Tensor]:
    return [x[i : i + size] for i in range(0, x.shape[0], size)]


# ----------------------------------------------------------------------------- (a) + (b)


def bare_gradcam_passes(model: AuditModel, x: Tensor, passes: int) -> None:
    """``passes`` bare Grad-CAM passes on batch ``x``: forward with a hook on the CAM layer, then
    the gradient of the predicted class's logit with respect to that layer's output."""
    layer = model.resolve_layer(model.cam_layer)
    store: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        for _ in range(passes):
            with torch.enable_grad():
                logits = model(x.detach().requires_grad_(True))
                target = logits.detach().argmax(1, keepdim=True)
                torch.autograd.grad(logits.gather(1, target).sum(), store["a"])
    finally:
        handle.remove()


def measure_pass(
    measure: str, explainers: list[SalienceExtractor], x: Tensor, offset: int, batch_size: int | None = None
) -> Any:
    """One measure on one batch through its public function (clean pass included), as the audit runs it:
    image variants packed into salience passes of at most ``batch_size`` images (the audit's batch setting)."""
    labels = torch.arange(offset, offset + x.shape[0], dtype=torch.int64) % 2
    explainer = explainers[0]
    if measure == "entropy":
        return sa.measures.entropy(explainer(x).maps)
    if measure == "noise":
        return sa.measures.noise_reaction(
            explainer, x, labels=labels, generator=torch.Generator().manual_seed(offset), batch_size=batch_size
        )
    if measure == "transforms":
        return sa.measures.equivariance(explainer, x, batch_size=batch_size)
    if measure == "stability":
        return sa.measures.stability([e(x).maps for e in explainers])
    if measure == "degradation":
        return sa.measures.degradation(explainer, x, labels, batch_size=batch_size)
    raise ValueError(f"no benchmark for measure {measure!r}")


def bench_measures(arch: str, n_images: int, batch_size: int, measures: tuple[str, ...]) -> list[dict[str, Any]]:
    """(a) throughput and (b) model-pass efficiency of each measure for one architecture."""
    group = models(arch, 2)
    size = group[0].input_size
    x = faces(n_images, size)
    out = []
    for measure in measures:
        runs = group if measure == "stability" else group[:1]
        explainers = [SalienceExtractor(m, "gradcam") for m in runs]
        # Warm-up on 2 images (hooks, cached operators, kernels), not timed.
        measure_pass(measure, explainers, x[:2], 0)
        for m in runs:
            bare_gradcam_passes(m, x[:2], 1)
        bare, ours = Clock(), Clock()
        for k, xb in enumerate(batches(x, batch_size)):
            with bare.run():
                for m in runs:
                    bare_gradcam_passes(m, xb, PASSES[measure])
            with ours.run():
                measure_pass(measure, explainers, xb, k * batch_size, batch_size)
        row = {
            "arch": arch,
            "input": size,
            "measure": measure,
            "runs": len(runs),
            "passes_per_image_run": PASSES[measure],
            "images": n_images,
            "batch": batch_size,
            "pipeline_s": ours.wall,
            "pipeline_cpu_s": ours.cpu,
            "images_per_s": n_images / ours.wall,
            "bare_s": bare.wall,
            "bare_cpu_s": bare.cpu,
            "efficiency": bare.wall / ours.wall,
            "efficiency_cpu": bare.cpu / ours.cpu,
        }
        print(
            f"  {arch:10s} {measure:12s} {row['images_per_s']:8.2f} img/s  "
            f"efficiency {row['efficiency']:.2f} (cpu {row['efficiency_cpu']:.2f})",
            flush=True,
        )
        out.append(row)
    return out


# ----------------------------------------------------------------------------- (c) memory


def proc_status_kb(field: str) -> int | None:
    """This process's ``field`` (``VmHWM``: peak resident set; ``VmRSS``: resident set) in kB, from
    ``/proc/self/status`` (Linux), or None when the file has no such line."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def _vmhwm_kb() -> int:
    kb = proc_status_kb("VmHWM")
    return -1 if kb is None else kb


def _vmrss_kb() -> int:
    kb = proc_status_kb("VmRSS")
    return -1 if kb is None else kb


def make_image_set(folder: Path, n: int, size: int = 64, distinct: int = 200) -> Path:
    """A header-CSV manifest of ``n`` PNG paths: ``distinct`` generated images, the rest symbolic links."""
    from PIL import Image

    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    base = faces(distinct, size)
    gen = torch.Generator().manual_seed(0)
    base = (0.8 * base + 0.2 * torch.rand(base.shape, generator=gen)).clamp(0, 1)
    for i in range(distinct):
        path = img_dir / f"src{i:04d}.png"
        if not path.exists():
            arr = (base[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(path)
    manifest = folder / f"images-{n}.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "label", "path", "dataset"])
        for i in range(n):
            path = img_dir / f"img{i:06d}.png"
            if not path.exists():
                path.symlink_to(img_dir / f"src{i % distinct:04d}.png")
            writer.writerow(["test", "Real" if i % 2 == 0 else "Synthetic", str(path), "generated"])
    return manifest


def memory_child(manifest: str, out: str) -> dict[str, Any]:
    """Run in a fresh process: a whole audit of ``manifest`` (entropy + stability, 2 small CNNs)."""
    group = models("small_cnn", 2)
    rss0 = _vmrss_kb()
    t0 = time.perf_counter()
    samples = sa.read_manifest(manifest)
    config = AuditConfig(measures=("entropy", "stability"), batch_size=64, shard_size=1024, device="cpu", gallery_size=1)
    sa.run_audit({"g": group}, {"generated": samples}, out, config, progress=False, report=False)
    return {"images": len(samples), "seconds": time.perf_counter() - t0, "rss_after_imports_kb": rss0, "vmhwm_kb": _vmhwm_kb()}


def summary_child(out: str) -> dict[str, Any]:
    """Run in a fresh process: ``salience-audit report`` of a finished audit (summary + report; how the rows are read)."""
    import pyarrow.parquet as pq

    from salience_audit.cli import main as cli_main

    rss0 = _vmrss_kb()
    rows = sum(pq.read_metadata(p).num_rows for p in Path(out, "results").glob("*.parquet"))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cli_main(["report", out])
    return {"rows": rows, "seconds": time.perf_counter() - t0, "rss_after_imports_kb": rss0, "vmhwm_kb": _vmhwm_kb()}


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(sizes: list[int], workdir: Path) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        manifest = make_image_set(workdir, n)
        audit_dir = workdir / f"audit-{n}"
        res = _child(["--memory-child", str(manifest), str(audit_dir)])
        summ = _child(["--summary-child", str(audit_dir)])
        res["summary"] = summ
        print(
            f"  {n:6d} images: audit peak RSS {res['vmhwm_kb'] / 1024:.0f} MiB ({res['seconds']:.0f} s); "
            f"summary peak RSS {summ['vmhwm_kb'] / 1024:.0f} MiB for {summ['rows']} rows",
            flush=True,
        )
        out.append(res)
    return out


# ----------------------------------------------------------------------------- (d) Quantus


def trained_small_cnn(workdir: Path, epochs: int = 3) -> AuditModel:
    """A small CNN trained briefly on the demo data (its scores vary with the input, unlike a random one)."""
    from salience_audit.cli import main as cli_main

    with contextlib.redirect_stdout(io.StringIO()):  # the demo: demo data, 1 + 1 runs, a small audit
        cli_main(["demo", "--out", str(workdir / "demo"), "--seeds", "2", "--epochs", str(epochs), "--quiet"])
    return sa.load_run(workdir / "demo" / "runs" / "small_cnn-xent-seed0").eval()


def bench_quantus(
    arch: str, n_images: int, batch_size: int, flip_steps: int, region_images: int, model: AuditModel | None = None
) -> dict[str, Any]:
    """Quantus Complexity / PixelFlipping / RegionPerturbation against ours, same model, images and maps.

    RegionPerturbation (100 model evaluations per image at its defaults) runs on the first
    ``region_images`` images only, against our guided degradation on those same images.
    """
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            import quantus
    except Exception as err:  # noqa: BLE001
        return {"arch": arch, "error": f"cannot import quantus: {type(err).__name__}: {err}"}

    trained = model is not None
    model = model if model is not None else models(arch, 1)[0]
    size = model.input_size
    x = faces(n_images, size)
    extractor = SalienceExtractor(model, "gradcam")
    outs = [extractor(xb) for xb in batches(x, batch_size)]
    maps = torch.cat([o.maps for o in outs])
    target = torch.cat([o.target for o in outs])
    maps_up = torch.nn.functional.interpolate(maps[:, None], size=(size, size), mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    x_np, y_np = x.numpy(), target.numpy()
    # Quantus checks features_in_step against the attribution's shape: give it one map per channel.
    a_np = maps_up[:, None].expand(-1, 3, -1, -1).numpy().astype(np.float32)
    res: dict[str, Any] = {
        "arch": arch,
        "weights": "trained 3 epochs on the demo data" if trained else "random initialisation",
        "input": size,
        "images": n_images,
        "batch": batch_size,
    }
    a1_np = maps_up[:, None].numpy().astype(np.float32)
    quiet: dict[str, Any] = {"disable_warnings": True, "display_progressbar": False}

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            value = fn()
            return value, time.perf_counter() - t0

    # Complexity: the metric alone, on the same upscaled maps.
    complexity = quantus.Complexity(**quiet)
    q_vals, q_s = timed(lambda: complexity(model=model, x_batch=x_np, y_batch=y_np, a_batch=a1_np.copy(), device="cpu", batch_size=batch_size, channel_first=True))
    ours_vals, o_s = timed(lambda: sa.measures.entropy(maps_up)["spatial_entropy"])
    ours_nat = ours_vals.double().numpy() * np.log(size * size)  # ours is normalised by log2(HW); Quantus: nats
    res["complexity_metric_only"] = {
        "ours_s": o_s,
        "quantus_s": q_s,
        "ratio": q_s / o_s,
        "max_abs_diff_nats": float(np.max(np.abs(np.asarray(q_vals) - ours_nat))),
    }

    # Complexity end to end (maps computed too): Quantus calls our Grad-CAM as its explain_func.
    def explain(model: Any, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        out = extractor(torch.from_numpy(np.asarray(inputs, dtype=np.float32)), target=torch.as_tensor(targets))
        return torch.nn.functional.interpolate(out.maps[:, None], size=(size, size), mode="bicubic",
                                               align_corners=False).clamp(0, 1).numpy()

    _, q_e2e = timed(lambda: complexity(model=model, x_batch=x_np, y_batch=y_np, explain_func=explain, device="cpu", batch_size=batch_size, channel_first=True))
    _, o_e2e = timed(lambda: [measure_pass("entropy", [extractor], xb, i * batch_size) for i, xb in enumerate(batches(x, batch_size))])
    res["complexity_end_to_end"] = {"ours_s": o_e2e, "quantus_s": q_e2e, "ratio": q_e2e / o_e2e}

    # PixelFlipping (deletion with a black baseline, flip_steps steps) against our deletion curves.
    # Quantus needs features_in_step to divide H*W and perturbs 3*H*W features: flip_steps % 3 == 0.
    n_features = 3 * size * size
    flipping = quantus.PixelFlipping(features_in_step=n_features // flip_steps, perturb_baseline=0.0, **quiet)
    q_curves, q_pf = timed(lambda: flipping(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np.copy(), device="cpu", batch_size=batch_size, channel_first=True, softmax=True))
    def ours_deletion() -> list[dict[str, Tensor]]:
        return [sa.measures.deletion(extractor, xb, steps=flip_steps, baseline="zero") for xb in batches(x, batch_size)]

    o_curves, o_pf = timed(ours_deletion)
    ours_del = torch.cat([c["deletion"] for c in o_curves])[:, 1:].numpy()
    q_arr = np.asarray(q_curves, dtype=np.float64)
    res["pixel_flipping"] = {
        "steps": flip_steps,
        "ours_s": o_pf,
        "quantus_s": q_pf,
        "ratio": q_pf / o_pf,
        "ours_model_evals_per_image": 2 * (flip_steps + 1),
        "quantus_model_evals_per_image": flip_steps,
        "ratio_per_model_eval": (q_pf / flip_steps) / (o_pf / (2 * (flip_steps + 1))),
        "mean_abs_diff_deletion_curve": float(np.mean(np.abs(q_arr - ours_del))),
        "max_abs_diff_deletion_curve": float(np.max(np.abs(q_arr - ours_del))),
    }

    # Our guided degradation (measure (e): clean + background + object passes) on the same images.
    _, o_deg = timed(lambda: [measure_pass("degradation", [extractor], xb, i * batch_size) for i, xb in enumerate(batches(x, batch_size))])
    res["guided_degradation_s"] = o_deg

    if region_images > 0:
        k = min(region_images, n_images)
        perturbation = quantus.RegionPerturbation(**quiet)  # defaults: 8 px patches, 100 regions, most relevant first
        _, q_rp = timed(lambda: perturbation(model=model, x_batch=x_np[:k], y_batch=y_np[:k], a_batch=a_np[:k].copy(), device="cpu", batch_size=batch_size, channel_first=True, softmax=True))
        _, o_deg_k = timed(lambda: [measure_pass("degradation", [extractor], xb, i * batch_size) for i, xb in enumerate(batches(x[:k], batch_size))])
        regions = min(100, (size // 8) ** 2)
        res["region_perturbation"] = {
            "images": k,
            "quantus_s": q_rp,
            "ours_guided_degradation_s": o_deg_k,
            "regions": regions,
            "ratio_vs_guided_degradation": q_rp / o_deg_k,
        }
    res["pixel_flipping"]["ratio_vs_guided_degradation"] = q_pf / o_deg
    print(f"  quantus {arch}: " + json.dumps({k: v for k, v in res.items() if isinstance(v, dict)}, default=float)[:400], flush=True)
    return res


# ----------------------------------------------------------------------------- (e) before / after

VERSION_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
arch, manifest, out, n_runs, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import salience_audit as sa
try:  # this version's public surface
    run_audit, AuditConfig, AuditModel, read_manifest = sa.run_audit, sa.AuditConfig, sa.AuditModel, sa.read_manifest
except AttributeError:  # an earlier version without one: the same functions where they lived
    from salience_audit.audit.config import AuditConfig
    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.manifest import read_manifest
    from salience_audit.models.audit_model import AuditModel
models = []
for k in range(n_runs):
    torch.manual_seed(k)
    models.append(AuditModel.from_arch(arch, weights=None, name=f"{arch}-seed{k}").eval())
samples = read_manifest(manifest)
config = AuditConfig(batch_size=batch, shard_size=4096, device="cpu", gallery_size=1)
t0, c0 = time.perf_counter(), time.process_time()
run_audit({"g": models}, {"bench": samples}, out, config, progress=False, report=False)
print(json.dumps({"package": sa.__file__, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
"""


def _version_run(package_root: Path, arch: str, manifest: Path, out: Path, batch: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(package_root), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", VERSION_CHILD, arch, str(manifest), str(out), "2", str(batch)],
                          capture_output=True, text=True, check=False, env=env, cwd=str(out.parent))
    if proc.returncode != 0:
        raise RuntimeError(f"{package_root}: audit failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(out: Path) -> Any:
    """The result rows of an audit folder of any version, read by this version's reader.

    ``normalize_rows`` gives row layout 1 (a pair of runs packed in ``run``) and layout 2
    (``run_a`` / ``run_b``, issue 16) the same ``run`` key, so versions compare row by row.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from salience_audit.results.reader import normalize_rows

    files = sorted(p for p in (out / "results").glob("*.parquet") if not p.name.startswith("."))
    frame = normalize_rows(pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True))
    return frame.sort_values(ROW_KEY, kind="mergesort").reset_index(drop=True)


ROW_KEY = ["dataset", "index", "group", "run", "measure", "variant"]
"""What identifies a result row in every version of the row schema."""


def compare_rows(a: Any, b: Any) -> dict[str, Any]:
    """Rows of two audits matched on :data:`ROW_KEY` (columns may differ between versions).

    ``same_rows``: the same keys on both sides, NaN in the same places; ``max_abs_diff``: the
    largest |value difference| over the rows both have (NaN when none).
    """
    merged = a[ROW_KEY + ["value"]].merge(b[ROW_KEY + ["value"]], on=ROW_KEY, how="outer",
                                          suffixes=("_a", "_b"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    va, vb = both["value_a"].to_numpy(float), both["value_b"].to_numpy(float)
    nan_mismatch = int((np.isnan(va) != np.isnan(vb)).sum())
    finite = ~np.isnan(va) & ~np.isnan(vb)
    only_a, only_b = int((merged["_merge"] == "left_only").sum()), int((merged["_merge"] == "right_only").sum())
    return {
        "same_rows": only_a == 0 and only_b == 0 and nan_mismatch == 0 and not a.duplicated(ROW_KEY).any(),
        "max_abs_diff": float(np.abs(va[finite] - vb[finite]).max()) if finite.any() else float("nan"),
        "rows_compared": int(len(both)), "rows_only_baseline": only_a, "rows_only_current": only_b,
        "nan_mismatch": nan_mismatch,
        "columns_added": sorted(set(b.columns) - set(a.columns)), "columns_removed": sorted(set(a.columns) - set(b.columns)),
    }


def bench_versions(baseline: Path, workloads: list[tuple[str, int, int]], reps: int, workdir: Path) -> list[dict[str, Any]]:
    """(e) The same whole audits (default measures, 2 runs) by the baseline package and by this one, alternating."""
    import numpy as np_

    current = HERE.parent
    out = []
    for arch, n_images, batch in workloads:
        size = 64 if arch == "small_cnn" else 224
        manifest = make_image_set(workdir / f"{arch}-{size}", n_images, size=size, distinct=min(n_images, 200))
        times: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
        for k in range(reps):
            for label, root in (("baseline", baseline), ("current", current)):
                folder = workdir / f"{arch}-{label}-{k}"
                times[label].append(_version_run(root, arch, manifest, folder, batch))
        cmp = compare_rows(_rows(workdir / f"{arch}-baseline-0"), _rows(workdir / f"{arch}-current-0"))
        same_rows, diff = cmp["same_rows"], cmp["max_abs_diff"]
        med = {k: float(np_.median([t["seconds"] for t in v])) for k, v in times.items()}
        med_cpu = {k: float(np_.median([t["cpu_s"] for t in v])) for k, v in times.items()}
        row = {
            "arch": arch, "input": size, "images": n_images, "batch": batch, "runs": 2, "reps": reps,
            "baseline_s": med["baseline"], "current_s": med["current"],
            "baseline_cpu_s": med_cpu["baseline"], "current_cpu_s": med_cpu["current"],
            "speed_ratio": med["baseline"] / med["current"], "speed_ratio_cpu": med_cpu["baseline"] / med_cpu["current"],
            "all_times_s": {k: [round(t["seconds"], 2) for t in v] for k, v in times.items()},
            **cmp,
        }
        print(f"  {arch:10s} baseline {med['baseline']:.1f} s, current {med['current']:.1f} s, "
              f"ratio {row['speed_ratio']:.3f} (cpu {row['speed_ratio_cpu']:.3f}); same rows {same_rows}, max diff {diff:.3g}"
              f" ({cmp['rows_compared']} rows compared, {cmp['rows_only_baseline']} only in the baseline, "
              f"{cmp['rows_only_current']} only in the current version; columns added {cmp['columns_added']}, "
              f"removed {cmp['columns_removed']})",
              flush=True)
        out.append(row)
    return out


# ----------------------------------------------------------------------------- report


def _f(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    lines = [
        BEGIN,
        "",
        f"Command: `{command}`  ",
        f"Date: {m['date']}  ",
        f"Machine: {m['nproc']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}; torch {m['torch']} "
        f"({m['torch_threads']} threads), Python {m['python']}, Quantus {m['quantus']}  ",
        f"Load average at start: {', '.join(f'{v:.1f}' for v in m['load_average_start'])} "
        "(a shared machine: wall-clock numbers carry that noise; CPU-time ratios are given beside them)",
        "",
        "### (a) Throughput and (b) model-pass efficiency per measure",
        "",
        "Images per second of the measure's public function (`sa.measures.*`, the code the audit's batch loop runs "
        "for it, clean pass included; images already in memory). "
        "Efficiency = time of the bare Grad-CAM passes the measure needs (plain PyTorch forward + "
        "`autograd.grad` to the CAM layer, same batches) / time of the measure; CPU = the same ratio in process CPU time.",
        "",
        "| model | input | measure | runs | passes / image / run | images | batch | images/s | measure s | bare passes s | efficiency | efficiency (CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["measures"]:
        lines.append(
            f"| {r['arch']} | {r['input']} | {r['measure']} | {r['runs']} | {r['passes_per_image_run']} | {r['images']} | "
            f"{r['batch']} | {_f(r['images_per_s'])} | {_f(r['pipeline_s'])} | {_f(r['bare_s'])} | "
            f"{_f(r['efficiency'])} | {_f(r['efficiency_cpu'])} |"
        )
    if result.get("versions"):
        v = result["versions"]
        lines += [
            "",
            "### (e) Before / after: whole audits by the earlier version and by this one",
            "",
            f"Baseline package: `{v['baseline']}`. The same `run_audit` (default measures, 2 randomly initialised runs, "
            "PNG files, results written, no report) in alternating fresh processes with one torch thread; medians. "
            "Speed ratio = baseline time / current time (above 1: the current version is faster). The machine is shared, "
            "so only the ratio of runs made side by side means something.",
            "",
            "| model | input | images | audits per version | baseline s | current s | speed ratio | speed ratio (CPU) | same rows | max abs diff |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in v["rows"]:
            lines.append(
                f"| {r['arch']} | {r['input']} | {r['images']} | {r['reps']} | {_f(r['baseline_s'])} | {_f(r['current_s'])} | "
                f"{_f(r['speed_ratio'], 3)} | {_f(r['speed_ratio_cpu'], 3)} | {'yes' if r['same_rows'] else 'NO'} | {r['max_abs_diff']:.3g} |"
            )
    if result.get("memory"):
        lines += [
            "",
            "### (c) Peak memory of a whole audit (small CNN, 64 px, entropy + stability, 2 runs)",
            "",
            "`VmHWM` of a fresh process running `run_audit` (preflight, sharded pass, results written, finalize; "
            "no report), then of a fresh process running `write_summary` on those results.",
            "",
            "| images | audit peak RSS MiB | RSS after imports MiB | audit s | result rows | summary peak RSS MiB | summary s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in result["memory"]:
            s = r["summary"]
            lines.append(
                f"| {r['images']} | {_f(r['vmhwm_kb'] / 1024, 0)} | {_f(r['rss_after_imports_kb'] / 1024, 0)} | "
                f"{_f(r['seconds'], 0)} | {s['rows']} | {_f(s['vmhwm_kb'] / 1024, 0)} | {_f(s['seconds'], 1)} |"
            )
        mem = result["memory"]
        for later in mem[1:]:
            growth = later["vmhwm_kb"] / mem[0]["vmhwm_kb"] - 1
            sgrowth = later["summary"]["vmhwm_kb"] / mem[0]["summary"]["vmhwm_kb"] - 1
            lines += [
                "",
                f"From {mem[0]['images']} to {later['images']} images the audit's peak RSS grows by {100 * growth:.1f}% "
                f"and the summary's by {100 * sgrowth:.1f}%"
                + (" (target: within 15%)." if later["images"] == 10 * mem[0]["images"] else "."),
            ]
    for q in result.get("quantus", []):
        lines += [
            "",
            f"### (d) Quantus, {q['arch']} at {q.get('input', '?')} px ({q.get('weights', '')}), {q.get('images', '?')} images",
            "",
        ]
        if "error" in q:
            lines.append(f"Not run: {q['error']}")
            continue
        c, e, p = q["complexity_metric_only"], q["complexity_end_to_end"], q["pixel_flipping"]
        lines += [
            "| quantity | ours s | Quantus s | Quantus / ours time | agreement |",
            "| --- | --- | --- | --- | --- |",
            f"| Complexity (entropy of the map), metric only, same maps | {c['ours_s']:.4f} | {c['quantus_s']:.4f} | "
            f"{_f(c['ratio'], 1)}x | max abs diff {c['max_abs_diff_nats']:.1e} nats |",
            f"| Complexity end to end (maps computed: Quantus calls our Grad-CAM) vs our entropy measure | "
            f"{_f(e['ours_s'])} | {_f(e['quantus_s'])} | {_f(e['ratio'], 2)}x | same maps |",
            f"| PixelFlipping ({p['steps']} steps, black baseline) vs our deletion + insertion curves "
            f"({p['steps'] + 1} points each) | {_f(p['ours_s'])} | {_f(p['quantus_s'])} | {_f(p['ratio'], 2)}x "
            f"(per model evaluation: {_f(p['ratio_per_model_eval'], 2)}x) | deletion curve mean abs diff "
            f"{p['mean_abs_diff_deletion_curve']:.1e} |",
        ]
        lines.append(
            f"| PixelFlipping ({p['steps']} steps) vs our guided degradation (measure (e): map + background + "
            f"object passes) | {_f(q['guided_degradation_s'])} | {_f(p['quantus_s'])} | "
            f"{_f(p['ratio_vs_guided_degradation'], 1)}x | different protocols |"
        )
        if "region_perturbation" in q:
            rp = q["region_perturbation"]
            lines.append(
                f"| RegionPerturbation (defaults: 8 px patches, {rp['regions']} regions) vs our guided degradation "
                f"(map + 2 passes), {rp['images']} images | {_f(rp['ours_guided_degradation_s'])} | "
                f"{_f(rp['quantus_s'])} | {_f(rp['ratio_vs_guided_degradation'], 1)}x | different protocols |"
            )
    lines += ["", END]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every part")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: all CPUs; 1 on a shared, busy machine)"
    )
    parser.add_argument("--resnet-images", type=int, default=32)
    parser.add_argument("--small-images", type=int, default=256)
    parser.add_argument("--memory-sizes", default="1000,10000,100000")
    parser.add_argument("--region-images", type=int, default=4,
                        help="ResNet-50 images for Quantus RegionPerturbation (100 model evaluations each)")
    parser.add_argument("--parts", default="abcd", help="which parts to run: a/b (measures), c (memory), d (Quantus), e (before/after, needs --baseline)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--baseline", type=Path, help="(e): a checkout of an earlier version to compare whole audits with "
                        "(e.g. git worktree add /tmp/base 6aaee52)")
    parser.add_argument("--version-reps", type=int, default=3, help="(e): audits per version and workload")
    parser.add_argument("--version-small-images", type=int, default=64)
    parser.add_argument("--version-resnet-images", type=int, default=4)
    parser.add_argument("--memory-child", nargs=2, metavar=("MANIFEST", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--summary-child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)))
        return 0
    if args.summary_child:
        print(json.dumps(summary_child(args.summary_child)))
        return 0

    if args.threads > 0:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory subprocesses too
    command = "python benchmarks/bench_audit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.resnet_images, args.small_images, args.memory_sizes, args.region_images = 8, 64, "200,1000", 2
    result: dict[str, Any] = {"machine": machine(), "command": command.strip()}
    print(json.dumps(result["machine"]), flush=True)
    t0 = time.perf_counter()
    result["measures"] = []
    if "a" in args.parts or "b" in args.parts:
        print("(a)/(b) measures", flush=True)
        result["measures"] += bench_measures("resnet50", args.resnet_images, 16, MEASURES)
        result["measures"] += bench_measures("small_cnn", args.small_images, 32, MEASURES)
    if "c" in args.parts:
        print("(c) memory", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
            result["memory"] = bench_memory([int(s) for s in args.memory_sizes.split(",")], Path(tmp))
    if "d" in args.parts:
        print("(d) quantus", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-quantus-") as tmp:
            small = trained_small_cnn(Path(tmp))
        result["quantus"] = [
            bench_quantus("small_cnn", args.small_images, 32, 12, region_images=args.small_images, model=small),
            bench_quantus("resnet50", max(8, args.resnet_images // 2), 16, 12, region_images=args.region_images),
        ]
    if "e" in args.parts:
        if args.baseline is None:
            parser.error("part e needs --baseline DIR")
        print("(e) before / after", flush=True)
        workloads = [("small_cnn", args.version_small_images, 32)]
        if args.version_resnet_images > 0:
            workloads.append(("resnet50", args.version_resnet_images, 16))
        with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp:
            result["versions"] = {"baseline": str(args.baseline),
                                  "rows": bench_versions(args.baseline.resolve(), workloads, args.version_reps, Path(tmp))}
    result["machine"]["load_average_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
    section = markdown(result, result["command"])
    print(section)
    if not args.no_doc:
        write_doc(section)
    print(f"done in {result['seconds']:.0f} s; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
