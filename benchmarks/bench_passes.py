"""Where the time of one Grad-CAM map goes: the passes behind it, timed side by side.

For each architecture, one batch of face images is explained (or only passed through the model)
in six ways, alternated repetition by repetition so that a change of load hits every way:

- ``inference forward``: ``model(x)`` under ``torch.inference_mode()``, no map - the floor of
  any forward-only salience;
- ``grad-mode forward``: ``model(x)`` with the input requiring grad, no backward - what a
  Grad-CAM pass spends before its backward;
- ``bare Grad-CAM pass``: grad-mode forward + ``autograd.grad`` of the target logit to the
  CAM layer (``bench_audit.bare_gradcam_passes``): the baseline of ``bench_audit.py`` and
  ``bench_gpu.py``;
- ``salience-audit forward-only``: ``SalienceExtractor(path="forward")``, maps included;
- ``salience-audit autograd``: ``SalienceExtractor(path="autograd")`` (torchcam), maps included;
- ``pytorch-grad-cam``: its ``GradCAM`` (``loss.backward()`` through the whole network, maps
  resized to the input), when the package is installed (``salience-audit[byo]``).

Reported: milliseconds per image (wall and process CPU time) and the forward-only path's
speed-up over each way, ``t_way / t_forward_only``. Forward-only salience removes the backward
pass and what grad mode keeps for it; it cannot be faster than the inference forward, so
``t_bare / t_inference`` bounds the speed-up over bare Grad-CAM passes on the machine at hand.

Run:  python benchmarks/bench_passes.py --arch resnet50,densenet121 --images 16 --threads 1 --doc
      python benchmarks/bench_passes.py --arch small_cnn --images 2 --reps 1 --out /tmp/p.json   (smoke)
Writes JSON (``--out``, default benchmarks/results/passes.json) and, with ``--doc``, the table
between the bench_passes markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from salience_audit.models.audit_model import AuditModel
from salience_audit.models.registry import get_spec
from salience_audit.salience.extract import SalienceExtractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import bare_gradcam_passes, faces  # noqa: E402
from bench_gpu import calibrated_models, header, machine, publish  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "passes.json"
BEGIN, END = "<!-- bench_passes:begin -->", "<!-- bench_passes:end -->"
FORWARD_ONLY = "salience-audit forward-only"


def inference_forward(model: AuditModel, x: Tensor) -> None:
    with torch.inference_mode():
        model(x)


def grad_mode_forward(model: AuditModel, x: Tensor) -> None:
    with torch.enable_grad():
        model(x.detach().requires_grad_(True))


def pytorch_grad_cam_way(model: AuditModel) -> Callable[[Tensor], Any] | None:
    """pytorch-grad-cam's Grad-CAM of the predicted class, or None when it is not installed."""
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError:
        return None
    cam = GradCAM(model=model, target_layers=[model.resolve_layer(model.cam_layer)])
    return lambda x: cam(input_tensor=x, targets=None)  # None: the highest-scoring class, as ours


def ways(model: AuditModel) -> dict[str, Callable[[Tensor], Any]]:
    forward_only = SalienceExtractor(model, "gradcam", path="forward")
    autograd = SalienceExtractor(model, "gradcam", path="autograd")
    out: dict[str, Callable[[Tensor], Any]] = {
        "inference forward": lambda x: inference_forward(model, x),
        "grad-mode forward": lambda x: grad_mode_forward(model, x),
        "bare Grad-CAM pass": lambda x: bare_gradcam_passes(model, x, 1),
        FORWARD_ONLY: forward_only,
        "salience-audit autograd": autograd,
    }
    peer = pytorch_grad_cam_way(model)
    if peer is not None:
        out["pytorch-grad-cam"] = peer
    return out


def bench_arch(arch: str, n_images: int, reps: int) -> dict[str, Any]:
    """Every way on the same ``n_images`` faces, one batch, ``reps`` alternated repetitions after a warm-up."""
    model = calibrated_models(arch, 1, get_spec(arch).input_size, torch.device("cpu"))[0]
    x = faces(n_images, model.input_size)
    fns = ways(model)
    fwd, aut = fns[FORWARD_ONLY](x), fns["salience-audit autograd"](x)  # warm-up; also: the same maps
    max_diff = float((fwd.maps - aut.maps.detach()).abs().max())
    for fn in fns.values():
        fn(x)
    wall = dict.fromkeys(fns, 0.0)
    cpu = dict.fromkeys(fns, 0.0)
    for rep in range(reps):
        for name in list(fns) if rep % 2 == 0 else list(fns)[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name](x)
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    per = n_images * reps
    rows = [{"way": name, "ms_per_image": 1e3 * wall[name] / per, "cpu_ms_per_image": 1e3 * cpu[name] / per,
             "forward_only_speedup": wall[name] / wall[FORWARD_ONLY],
             "forward_only_speedup_cpu": cpu[name] / cpu[FORWARD_ONLY]} for name in fns]
    return {"arch": arch, "input": model.input_size, "images": n_images, "reps": reps,
            "max_map_difference_forward_vs_autograd": max_diff, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [BEGIN, "", *header(result)]
    for arch in result["archs"]:
        lines += [f"#### {arch['arch']} at {arch['input']} px, one batch of {arch['images']} images, "
                  f"{arch['reps']} alternated repetitions (forward-only and autograd maps differ by at most "
                  f"{arch['max_map_difference_forward_vs_autograd']:.2g})", "",
                  "| way | ms / image | CPU ms / image | forward-only speed-up over it | same, CPU time |",
                  "| --- | --- | --- | --- | --- |"]
        for r in arch["rows"]:
            lines.append(f"| {r['way']} | {r['ms_per_image']:.1f} | {r['cpu_ms_per_image']:.1f} | "
                         f"{r['forward_only_speedup']:.2f}x | {r['forward_only_speedup_cpu']:.2f}x |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50,densenet121", help="comma-separated registry architectures")
    parser.add_argument("--images", type=int, default=16, help="images in the batch (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=4, help="alternated repetitions (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.images < 1 or args.reps < 1:
        parser.error("--images and --reps must be at least 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    command = "python benchmarks/bench_passes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {"command": command.strip(), "machine": machine(torch.device("cpu")), "archs": []}
    for arch in [a for a in args.arch.split(",") if a]:
        entry = bench_arch(arch, args.images, args.reps)
        for r in entry["rows"]:
            print(f"{arch:12s} {r['way']:28s} {r['ms_per_image']:8.1f} ms/img  forward-only "
                  f"{r['forward_only_speedup']:.2f}x faster", flush=True)
        result["archs"].append(entry)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    publish(result, Path(args.out), markdown(result), args.doc, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
