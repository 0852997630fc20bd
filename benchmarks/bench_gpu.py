"""Forward-only vs autograd salience per measure, GPU-ready: images/s, speed-up over the bare passes, memory.

For each architecture and each setting (salience path ``forward`` / ``autograd``; AMP off / on
and channels-last off / on, ``--settings``) this script times ``BatchAuditor.process`` with one
measure switched on (entropy, noise, transforms, stability, degradation, deletion) on image
batches already in memory, and - batch by batch in alternation, so that load changes hit every
side - the *bare autograd Grad-CAM passes* that measure needs (plain PyTorch forward with a hook
on the CAM layer + ``autograd.grad`` of the target logit to that layer: the pass limit of any
Grad-CAM tool, the baseline of ``bench_audit.py``). Passes per image and run: entropy 1, noise
1 + 7 levels, transforms 13, stability 1 per run (2 runs), degradation 3, deletion
1 + 4 (steps + 1) (deleted and inserted images at steps + 1 fractions, salience order and random
control). For deletion a second baseline is given: 1 bare Grad-CAM pass + the scoring passes as
bare ``no_grad`` forwards (what the measure needed before forward-only salience).

Speed-up = bare passes s / pipeline s (above 1: the pipeline beats the pass limit), the bare
passes in the same precision and memory format; with AMP or channels-last on, a second speed-up
is against the full-precision, contiguous bare passes of the ``off`` setting (the baseline of
``bench_audit.py``: what the audit's own settings gain over a plain Grad-CAM tool). AMP is the
audit's ``--amp``: ``device.amp_dtype`` (bfloat16; float16 on GPUs without it). The
projection for 100,000 images x 10 runs x all measures is
``1e5 * 10 * (sum_m t_m - (M - 1) t_clean)``, ``t_m`` the seconds per image and run of measure m
(stability's halved: it ran 2 runs), ``t_clean`` that of entropy (the clean pass every measure
shares in a real audit, counted once).

On CUDA the batch is ``auto`` (``audit.batchsize``: the largest that fits, measured) unless
``--batch`` is given, and peak memory is ``torch.cuda.max_memory_allocated``. On the CPU memory is
the process's peak RSS, and AMP is only fast where the CPU has native bfloat16
(``device.cpu_has_fast_bfloat16``, recorded in the machine line). ``--memory`` adds the peak RSS (``VmHWM``) of a whole ``run_audit`` in a
fresh subprocess per path (entropy + stability, ``--memory-runs`` runs of ``--memory-arch``).

Run:  python benchmarks/bench_gpu.py                                   (CUDA: ResNet-50, 224 px)
      python benchmarks/bench_gpu.py --arch resnet50,densenet121 --images 8 --batch 4 --threads 1 --memory
      python benchmarks/bench_gpu.py --arch small_cnn --images 4 --batch 2 --out /tmp/x.json   (smoke)
Writes JSON (``--out``, default benchmarks/results/gpu.json) and, with ``--doc``, the tables between
the bench_gpu markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from salience_audit.audit.batch import BatchAuditor, BatchInput, RunExtractor
from salience_audit.audit.config import AuditConfig
from salience_audit.results.schema import RowBuffer
from salience_audit.device import amp_dtype, autocast, cpu_has_fast_bfloat16
from salience_audit.models.audit_model import AuditModel
from salience_audit.models.registry import get_spec
from salience_audit.salience.extract import SalienceExtractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import bare_gradcam_passes, faces, proc_status_kb  # noqa: E402  (the same images, bare passes
# and /proc reader as bench_audit)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu.json"
DOC = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_gpu:begin -->", "<!-- bench_gpu:end -->"

MEASURES = ("entropy", "noise", "transforms", "stability", "degradation", "deletion")
SETTINGS: dict[str, tuple[bool, bool]] = {"off": (False, False), "amp": (True, False), "cl": (False, True),
                                          "amp+cl": (True, True)}
"""``--settings`` names -> (AMP, channels-last)."""
PATHS = ("forward", "autograd")
DELETION_STEPS = 10
"""The audit's default; ``--deletion-steps`` lowers it for slow CPU runs (all its passes are alike)."""


def grad_passes(measure: str) -> int:
    """Grad-CAM passes per image and run the measure needs."""
    return {"entropy": 1, "noise": 8, "transforms": 13, "stability": 1, "degradation": 3,
            "deletion": 1 + 4 * (DELETION_STEPS + 1)}[measure]


def machine(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
        "amp_dtype": str(amp_dtype(device)).removeprefix("torch."),
    }
    if device.type == "cpu":
        out["cpu_native_bfloat16"] = cpu_has_fast_bfloat16()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out["gpu"] = props.name
        out["gpu_memory_gib"] = props.total_memory / 2**30
    return out


def calibrated_models(arch: str, n: int, size: int, device: torch.device) -> list[AuditModel]:
    """``n`` random models (seeds 0..n-1) whose batch-norm statistics come from one random batch,
    so deep random networks keep unit-scale features (the cost of a pass does not depend on weights)."""
    out = []
    for k in range(n):
        torch.manual_seed(k)
        m = AuditModel.from_arch(arch, name=f"{arch}-seed{k}")
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.momentum = 1.0
        with torch.no_grad():
            m.train()(torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(k)))
        out.append(m.eval().to(device))
    return out


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def run(self, device: torch.device) -> Iterator[None]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds += time.perf_counter() - t0


def precision(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[None]:
    """The audit's mixed precision (``--amp``) for the bare passes, or full precision."""
    return autocast(device, amp_dtype(device) if amp else None)


def bare_forward(model: AuditModel, x: Tensor, passes: int) -> None:
    with torch.no_grad():
        for _ in range(passes):
            model(x)


def make_auditor(models: list[AuditModel], measure: str, path: str, batch: int, amp: bool, channels_last: bool,
                 size: int) -> BatchAuditor:
    config = AuditConfig(measures=(measure,), batch_size=batch, device=str(models[0].device), salience_path=path,
                         deletion_steps=DELETION_STEPS)
    runs = []
    for m in models:
        ex = SalienceExtractor(m, "gradcam", path=path, autocast_dtype=amp_dtype(m.device) if amp else None,
                               channels_last=channels_last)
        runs.append(RunExtractor(m.name, ex))
    return BatchAuditor(runs, config, "bench", "g", size)


def process(auditor: BatchAuditor, x: Tensor, offset: int) -> None:
    n = x.shape[0]
    batch = BatchInput(images=x, labels=torch.arange(n, device=x.device) % 2, indices=np.arange(offset, offset + n),
                       paths=[f"img{offset + i}" for i in range(n)])
    auditor.process(batch, RowBuffer(), torch.Generator(device=x.device).manual_seed(offset))


def bench_setting(models: list[AuditModel], x: Tensor, batch: int, amp: bool, channels_last: bool,
                  measures: tuple[str, ...], paths: tuple[str, ...] = PATHS) -> list[dict[str, Any]]:
    """One (arch, AMP, channels-last) setting: every measure, both paths and the bare baselines."""
    device = models[0].device
    size = models[0].input_size
    if channels_last:  # the audit's extractor converts each batch at the model's input; the bare passes get it so
        for m in models:
            m.to(memory_format=torch.channels_last)
    xb_bare_format = torch.channels_last if channels_last else torch.contiguous_format
    x_bare = x.contiguous(memory_format=xb_bare_format)
    rows = []
    for measure in measures:
        runs = models[:2] if measure == "stability" else models[:1]
        auditors = {p: make_auditor(runs, measure, p, batch, amp, channels_last, size) for p in paths}
        for aud in auditors.values():  # warm-up (and the auto path's one-time check), not timed
            process(aud, x[:2], 0)
        with precision(device, amp):
            for m in runs:
                bare_gradcam_passes(m, x_bare[:2], 1)
        clocks = {k: Clock() for k in (*paths, "bare", "bare_scoring")}
        peaks = {p: 0 for p in paths}
        for k, start in enumerate(range(0, x.shape[0], batch)):
            xb, xb_bare = x[start : start + batch], x_bare[start : start + batch]
            with clocks["bare"].run(device), precision(device, amp):
                for m in runs:
                    bare_gradcam_passes(m, xb_bare, grad_passes(measure))
            if measure == "deletion":
                with clocks["bare_scoring"].run(device), precision(device, amp):
                    for m in runs:
                        bare_gradcam_passes(m, xb_bare, 1)
                        bare_forward(m, torch.cat([xb_bare, xb_bare]).contiguous(memory_format=xb_bare_format),
                                     2 * (DELETION_STEPS + 1))
            for path in paths if k % 2 == 0 else paths[::-1]:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with clocks[path].run(device):
                    process(auditors[path], xb, start)
                if device.type == "cuda":
                    peaks[path] = max(peaks[path], torch.cuda.max_memory_allocated(device))
        n = x.shape[0]
        row: dict[str, Any] = {
            "measure": measure, "runs": len(runs), "grad_passes_per_image_run": grad_passes(measure), "images": n,
            "batch": batch, "amp_bf16": amp, "channels_last": channels_last, "deletion_steps": DELETION_STEPS,
            "bare_s": clocks["bare"].seconds, "bare_images_per_s": n / clocks["bare"].seconds,
        }
        for path in paths:
            row[f"{path}_s"] = clocks[path].seconds
            row[f"{path}_images_per_s"] = n / clocks[path].seconds
            row[f"speedup_{path}_vs_bare"] = clocks["bare"].seconds / clocks[path].seconds
            if device.type == "cuda":
                row[f"{path}_peak_gib"] = peaks[path] / 2**30
        if len(paths) == 2:
            row["forward_vs_autograd"] = clocks["autograd"].seconds / clocks["forward"].seconds
        if measure == "deletion" and "forward" in paths:
            row["bare_scoring_s"] = clocks["bare_scoring"].seconds
            row["speedup_forward_vs_bare_scoring"] = clocks["bare_scoring"].seconds / clocks["forward"].seconds
        print(f"  {measure:12s} amp={int(amp)} cl={int(channels_last)}  "
              + "  ".join(f"{p} {row[f'{p}_images_per_s']:8.3f} img/s ({row[f'speedup_{p}_vs_bare']:.2f}x bare)"
                          for p in paths)
              + f"  bare {row['bare_images_per_s']:8.3f} img/s", flush=True)
        rows.append(row)
    if channels_last:
        for m in models:
            m.to(memory_format=torch.contiguous_format)
    return rows


def against_full_precision(rows: list[dict[str, Any]], paths: tuple[str, ...]) -> None:
    """Add ``speedup_{path}_vs_full_bare``: the ``off`` setting's bare seconds of the same measure / this row's
    pipeline seconds (same images and batches, timed in the same run, not alternated with this row)."""
    base = {r["measure"]: r["bare_s"] for r in rows if not r["amp_bf16"] and not r["channels_last"]}
    for r in rows:
        if (r["amp_bf16"] or r["channels_last"]) and r["measure"] in base:
            for path in paths:
                r[f"speedup_{path}_vs_full_bare"] = base[r["measure"]] / r[f"{path}_s"]


def projection(rows: list[dict[str, Any]], path: str, runs: int = 10, images: int = 100_000) -> float | None:
    """Seconds for ``images`` x ``runs`` x all measures (see the module docstring), None if a measure is missing."""
    per = {r["measure"]: r[f"{path}_s"] / r["images"] / r["runs"] for r in rows if f"{path}_s" in r}
    if set(per) != set(MEASURES):
        return None
    total = sum(per.values()) - (len(per) - 1) * per["entropy"]
    return images * runs * total


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux keeps that across ``fork`` + ``exec``, so a child
    started by a large parent reports the parent's peak (this script's parent grows to
    several GB timing autograd passes); ``VmHWM`` belongs to the new address space.
    """
    kb = proc_status_kb("VmHWM")
    if kb is None:
        raise RuntimeError("no VmHWM in /proc/self/status: the memory benchmark needs Linux")
    return kb / 1024


def memory_child(arch: str, n_runs: int, n_images: int, path: str, batch: str) -> dict[str, Any]:
    """In a fresh process: ``run_audit`` of ``n_images`` face PNGs x ``n_runs`` runs, entropy + stability."""
    from PIL import Image

    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.sample import Sample

    with tempfile.TemporaryDirectory(prefix="bench-gpu-mem-") as tmp:
        size = get_spec(arch).input_size
        x = faces(n_images, size)
        samples = []
        for i in range(n_images):
            p = Path(tmp) / f"img{i:03d}.png"
            Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(p)
            samples.append(Sample(path=str(p), label=i % 2, dataset="faces"))
        # Plain random initialisation: a calibration pass here would set the process's peak RSS itself.
        models = []
        for k in range(n_runs):
            torch.manual_seed(k)
            models.append(AuditModel.from_arch(arch, name=f"{arch}-seed{k}").eval())
        rss_models = peak_rss_mib()
        config = AuditConfig(measures=("entropy", "stability"), device="cpu", salience_path=path,
                             batch_size=batch if batch == "auto" else int(batch), gallery_size=1)
        t0 = time.perf_counter()
        run_audit({"g": models}, {"faces": samples}, Path(tmp) / "audit", config=config, progress=False, report=False)
        seconds = time.perf_counter() - t0
        meta = json.loads((Path(tmp) / "audit" / "audit.json").read_text())
    return {"arch": arch, "runs": n_runs, "images": n_images, "path": path, "batch": meta["config"]["batch_size"],
            "seconds": seconds, "peak_rss_mib": peak_rss_mib(), "peak_rss_after_models_mib": rss_models}


def bench_memory(arch: str, n_runs: int, n_images: int, batches: str) -> list[dict[str, Any]]:
    out = []
    for path, batch in [(p, b) for b in batches.split(",") if b for p in ("forward", "autograd")]:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", arch, str(n_runs),
                               str(n_images), path, batch], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  memory {arch} x{n_runs} runs, {n_images} images, {path}: peak RSS {res['peak_rss_mib']:.0f} MiB "
              f"({res['seconds']:.0f} s, batch {res['batch']})", flush=True)
        out.append(res)
    return out


def header(result: dict[str, Any]) -> list[str]:
    """The command, date and machine lines that open a benchmark's section of docs/benchmarks.md."""
    m = result["machine"]
    return [f"Command: `{result['command']}`  ", f"Date: {m['date']}  ",
            f"Device: {m.get('gpu', 'CPU')} ({m['device']}); {m['cpus']} CPUs, torch {m['torch']} "
            f"({m['torch_threads']} threads); load average at start "
            f"{', '.join(f'{v:.1f}' for v in m['load_average_start'])}"
            f", at end {', '.join(f'{v:.1f}' for v in m.get('load_average_end', []))}"
            + (f"; AMP dtype {m['amp_dtype']}" if "amp_dtype" in m else "")
            + ({True: " (native on this CPU)", False: " (emulated on this CPU)"}.get(m.get("cpu_native_bfloat16"), "")
               if m.get("amp_dtype") == "bfloat16" else ""), ""]


def markdown(result: dict[str, Any]) -> str:
    lines = [BEGIN, "", *header(result)]
    for arch in result["archs"]:
        lines += [f"#### {arch['arch']} at {arch['input']} px, {arch['images']} images, batch {arch['batch']}", "",
                  "| measure | runs | AMP | channels-last | Grad-CAM passes / image / run | forward img/s | "
                  "autograd img/s | bare passes img/s | speed-up forward vs bare | autograd vs bare | forward vs autograd "
                  "| forward vs full-precision bare |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        def num(r: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
            return fmt.format(r[key]) if key in r else "-"

        for r in arch["rows"]:
            extra = ""
            if "speedup_forward_vs_bare_scoring" in r:
                extra = f" ({r['speedup_forward_vs_bare_scoring']:.2f}x vs 1 Grad-CAM + no_grad scoring passes)"
            lines.append(
                f"| {r['measure']} | {r['runs']} | {'on' if r['amp_bf16'] else 'off'} | {'on' if r['channels_last'] else 'off'} "
                f"| {r['grad_passes_per_image_run']} | {num(r, 'forward_images_per_s')} | {num(r, 'autograd_images_per_s')} | "
                f"{r['bare_images_per_s']:.3f} | {num(r, 'speedup_forward_vs_bare', '{:.2f}x')}{extra} | "
                f"{num(r, 'speedup_autograd_vs_bare', '{:.2f}x')} | {num(r, 'forward_vs_autograd', '{:.2f}x')} | "
                f"{num(r, 'speedup_forward_vs_full_bare', '{:.2f}x')} |")
        proj = []
        for p in arch["projections"]:
            hours = [f"{label} {p[key]:.1f} h" for key, label in (("forward_h", "forward-only"), ("autograd_h", "autograd"))
                     if p.get(key) is not None]
            if hours:
                proj.append(f"AMP {'on' if p['amp_bf16'] else 'off'}, channels-last {'on' if p['channels_last'] else 'off'}: "
                            + ", ".join(hours))
        if proj:
            lines += ["", "Projected time for 100,000 images x 10 runs x all measures on this device: "
                          + "; ".join(proj) + "."]
        lines.append("")
    if result.get("memory"):
        lines += ["#### Peak memory of a whole audit (entropy + stability), fresh process, `VmHWM`", "",
                  "| model | runs | images | salience path | batch | peak RSS MiB | after building the models MiB | s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["memory"]:
            lines.append(f"| {r['arch']} | {r['runs']} | {r['images']} | {r['path']} | {r['batch']} | "
                         f"{r['peak_rss_mib']:.0f} | {r['peak_rss_after_models_mib']:.0f} | {r['seconds']:.0f} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_doc(section: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``section`` between the ``begin`` / ``end`` markers of docs/benchmarks.md (appended when absent)."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")


def publish(payload: Any, out: Path, section: str, doc: bool, begin: str = BEGIN, end: str = END) -> None:
    """Write ``payload`` as JSON to ``out``, print ``section`` and, with ``doc``, put it in docs/benchmarks.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n", encoding="utf-8")
    print(section)
    if doc:
        write_doc(section, begin, end)


def main(argv: list[str] | None = None) -> int:
    global DELETION_STEPS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50", help="comma-separated registry architectures")
    parser.add_argument("--size", type=int, default=0, help="input size (default: the architecture's)")
    parser.add_argument("--images", type=int, default=0, help="images per measure (default: 256 on CUDA, 8 on CPU)")
    parser.add_argument("--batch", type=int, default=0, help="images per pass (default: auto on CUDA, 4 on CPU)")
    parser.add_argument("--measures", default=",".join(MEASURES))
    parser.add_argument("--paths", default=",".join(PATHS), help="salience paths to time through the pipeline")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated (AMP, channels-last) settings among {list(SETTINGS)}")
    parser.add_argument("--deletion-steps", type=int, default=DELETION_STEPS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (default: all)")
    parser.add_argument("--memory", action="store_true", help="also the peak RSS of a whole audit per path")
    parser.add_argument("--memory-arch", default="densenet121")
    parser.add_argument("--memory-runs", type=int, default=10)
    parser.add_argument("--memory-images", type=int, default=16)
    parser.add_argument("--memory-batch", default="auto", help="comma-separated batch sizes ('auto' or numbers)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--doc", action="store_true", help="write the tables into docs/benchmarks.md")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.memory_child:
        arch, runs, images, path, batch = args.memory_child
        print(json.dumps(memory_child(arch, int(runs), int(images), path, batch)))
        return 0
    DELETION_STEPS = args.deletion_steps
    paths = tuple(p for p in args.paths.split(",") if p)
    if not paths or set(paths) - set(PATHS):
        parser.error(f"--paths takes {list(PATHS)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    measures = tuple(m for m in args.measures.split(",") if m)
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measure(s) {unknown}; choose from {list(MEASURES)}")
    command = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {"command": command.strip(), "machine": machine(device), "archs": []}
    print(json.dumps(result["machine"]), flush=True)
    names = [n for n in args.settings.split(",") if n]
    if not names or set(names) - set(SETTINGS):
        parser.error(f"--settings takes {list(SETTINGS)}")
    settings = [SETTINGS[n] for n in names]
    for arch in [a for a in args.arch.split(",") if a]:
        size = args.size or get_spec(arch).input_size
        models = calibrated_models(arch, 2, size, device)
        if args.batch:
            batch = args.batch
        elif device.type == "cuda":
            from salience_audit.audit.batchsize import auto_batch_size

            batch = auto_batch_size(models[0], AuditConfig(salience_path="forward", device=str(device)), device)
        else:
            batch = 4
        n = args.images or (256 if device.type == "cuda" else 8)
        x = faces(n, size).to(device)
        print(f"{arch} at {size} px, {n} images, batch {batch}", flush=True)
        rows = []
        for amp, channels_last in settings:
            rows += bench_setting(models, x, batch, amp, channels_last, measures, paths)
        against_full_precision(rows, paths)
        entry: dict[str, Any] = {"arch": arch, "input": size, "images": n, "batch": batch, "rows": rows,
                                 "projections": []}
        for amp, channels_last in settings:
            same = [r for r in rows if (r["amp_bf16"], r["channels_last"]) == (amp, channels_last)]
            hours = {path: projection(same, path) for path in ("forward", "autograd")}
            entry["projections"].append({"amp_bf16": amp, "channels_last": channels_last,
                                         **{f"{k}_h": None if v is None else v / 3600 for k, v in hours.items()}})
        result["archs"].append(entry)
    if args.memory:
        result["memory"] = bench_memory(args.memory_arch, args.memory_runs, args.memory_images, args.memory_batch)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    publish(result, Path(args.out), markdown(result), args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
