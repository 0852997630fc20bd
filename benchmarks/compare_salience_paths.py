"""Audit rows and 8-bit maps through forward-only salience (and the faster settings) against the autograd path.

Audits of the same runs and images: the reference with ``salience_path="autograd"`` in full
precision and the contiguous memory format, and one per ``--variants`` setting, each compared
row by row with the reference. The settings: ``forward`` (``salience_path="auto"``: forward-only
after each run's first-batch check), ``channels-last`` (the same, ``channels_last=True``),
``amp`` (the same, ``amp=True``: bfloat16 passes) and ``amp+channels-last``. The cases:

- the demo (``salience_audit.demo``: its data, its two families of small CNNs - trained here
  for ``--demo-epochs`` epochs with ``--demo-seeds`` seeds per family - and its audit settings,
  every measure);
- a ResNet-50 audit at 224 px (2 runs with random weights and batch-norm statistics from one
  batch, ``--resnet-images`` face images, every measure, deletion with 4 steps).

For each: the number of rows, the largest and the 99th-percentile absolute difference of any
value (SSIM and every other measure), the largest of the SSIM rows, the rows differing by more
than 1e-6; and for the clean maps of every run and image the 8-bit levels q = floor(255 S) of
both: equal levels, levels that differ where the float maps straddle a level boundary
(|S_f - S_a| < 1/255 with floor differing), and any other difference.

Run: python benchmarks/compare_salience_paths.py [--variants forward,channels-last,amp,amp+channels-last] [--doc]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.pipeline import run_audit
from salience_audit.audit.worker import build_extractor
from salience_audit.data.images import load_image
from salience_audit.models.audit_model import AuditModel, load_run
from salience_audit.salience.extract import SalienceExtractor
from salience_audit.salience.normalize import to_uint8_levels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import publish  # noqa: E402

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- compare_paths:begin -->", "<!-- compare_paths:end -->"
KEYS = ["dataset", "path", "group", "run", "measure", "variant"]
VARIANTS: dict[str, dict[str, Any]] = {
    "forward": {"salience_path": "auto"},
    "channels-last": {"salience_path": "auto", "channels_last": True},
    "amp": {"salience_path": "auto", "amp": True},
    "amp+channels-last": {"salience_path": "auto", "amp": True, "channels_last": True},
}
"""``--variants`` names -> the settings each changes from the reference (autograd, full precision, contiguous)."""
REFERENCE: dict[str, Any] = {"salience_path": "autograd", "amp": False, "channels_last": False}


def read_rows(audit: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in (audit / "results").glob("*.parquet") if not p.name.startswith("."))
    rows = pq.read_table(files).to_pandas()
    for col in rows.columns:
        if isinstance(rows[col].dtype, pd.CategoricalDtype):
            rows[col] = rows[col].astype(str)
    return rows


def compare_rows(a: Path, b: Path) -> dict[str, Any]:
    ra, rb = read_rows(a), read_rows(b)
    merged = ra.merge(rb, on=KEYS, suffixes=("_a", "_b"), how="outer", indicator=True)
    both = merged[merged["_merge"] == "both"]
    va, vb = both["value_a"].to_numpy(np.float64), both["value_b"].to_numpy(np.float64)
    nan_differs = int((np.isnan(va) != np.isnan(vb)).sum())
    diff = np.abs(va - vb)
    diff[np.isnan(diff)] = 0.0
    ssim = both["measure"].str.contains("ssim").to_numpy()
    return {
        "rows": int(len(ra)), "rows_other": int(len(rb)), "unmatched": int((merged["_merge"] != "both").sum()),
        "nan_pattern_differs": nan_differs, "max_abs_diff": float(diff.max(initial=0.0)),
        "max_abs_diff_ssim": float(diff[ssim].max(initial=0.0)), "rows_over_1e-6": int((diff > 1e-6).sum()),
        "p99_abs_diff": float(np.quantile(diff, 0.99)) if diff.size else 0.0,
    }


def compare_levels(models: list[AuditModel], images: torch.Tensor, config: AuditConfig) -> dict[str, Any]:
    """8-bit levels of the clean maps: the reference extractor against the one ``config`` builds (forward path forced)."""
    equal = straddle = other = 0
    max_float = 0.0
    cpu = torch.device("cpu")
    for m in models:
        fa = SalienceExtractor(m, config.method, path="autograd")(images).maps
        ff = build_extractor(m, replace(config, salience_path="forward"), cpu)(images).maps
        build_extractor(m, replace(config, **REFERENCE), cpu)  # the model back in the contiguous format
        qa, qf = to_uint8_levels(fa), to_uint8_levels(ff)
        same = qa == qf
        close = (fa - ff).abs() < 1.0 / 255
        equal += int(same.sum())
        straddle += int((~same & close).sum())
        other += int((~same & ~close).sum())
        max_float = max(max_float, float((fa - ff).abs().max()))
    return {"map_cells": equal + straddle + other, "levels_equal": equal, "levels_straddle": straddle,
            "levels_other": other, "max_abs_map_diff": max_float}


def compare_variants(root: Path, label: str, models: list[AuditModel], images: torch.Tensor, base: AuditConfig,
                     variants: list[str], audit: Any) -> list[dict[str, Any]]:
    """Run the reference audit and one per variant (``audit(config, folder)``), each compared with the reference."""
    audit(replace(base, **REFERENCE), root / "audit-reference")
    cases = []
    for name in variants:
        config = replace(base, **{**REFERENCE, **VARIANTS[name]})
        audit(config, root / f"audit-{name}")
        cases.append({"case": label, "setting": name, **compare_rows(root / "audit-reference", root / f"audit-{name}"),
                      **compare_levels(models, images, config)})
        print(json.dumps(cases[-1]), flush=True)
    return cases


def demo_case(root: Path, seeds: int, epochs: int, variants: list[str]) -> list[dict[str, Any]]:
    from salience_audit.data.demo import build_demo_data
    from salience_audit.data.manifest import read_manifest
    from salience_audit.demo import DemoSettings, _as_dataset, _train_family

    data = build_demo_data(root / "data")
    samples = read_manifest(data.manifest)
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    ood = read_manifest(data.out_of_set_manifest)
    settings = replace(DemoSettings(), seeds=seeds, epochs=epochs)
    groups = {loss: _train_family(loss, settings, train, test, root / "runs", False) for loss in ("xent", "cyborg")}
    datasets = {"demo-test": [_as_dataset(s, "demo-test") for s in test],
                "non-faces": [_as_dataset(s, "non-faces") for s in ood]}
    base = AuditConfig(method="gradcam", measures=("entropy", "noise", "transforms", "stability", "degradation",
                                                    "deletion", "human"),
                       batch_size=settings.audit_batch_size, shard_size=256, device="cpu")
    def audit(config: AuditConfig, folder: Path) -> None:
        run_audit(groups, datasets, folder, config=config, ood_datasets=["non-faces"], progress=False, report=False)

    models = [load_run(r).eval() for runs in groups.values() for r in runs]
    images = torch.stack([load_image(s.path, 64) for s in test + ood])
    label = f"demo ({len(test)} test + {len(ood)} out-of-set images, {2 * seeds} runs, {epochs} epochs)"
    return compare_variants(root, label, models, images, base, variants, audit)


def resnet_case(root: Path, n_images: int, variants: list[str]) -> list[dict[str, Any]]:
    from PIL import Image

    from salience_audit.data.sample import Sample

    from bench_gpu import calibrated_models, faces

    x = faces(n_images, 224)
    samples = []
    for i in range(n_images):
        p = root / f"face{i:02d}.png"
        Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(p)
        samples.append(Sample(path=str(p), label=i % 2, dataset="faces"))
    models = calibrated_models("resnet50", 2, 224, torch.device("cpu"))
    base = AuditConfig(measures=("entropy", "noise", "transforms", "stability", "degradation", "deletion"),
                       batch_size=8, device="cpu", deletion_steps=4, gallery_size=1)
    def audit(config: AuditConfig, folder: Path) -> None:
        run_audit({"g": models}, {"faces": samples}, folder, config=config, progress=False, report=False)

    images = torch.stack([load_image(s.path, 224) for s in samples])
    label = f"ResNet-50 at 224 px ({n_images} images, 2 runs, random weights)"
    return compare_variants(root, label, models, images, base, variants, audit)


def markdown(cases: list[dict[str, Any]], command: str) -> str:
    lines = [BEGIN, "", f"Command: `{command}`", "",
             "| audit | setting | rows | unmatched rows | max abs difference (all rows) | 99th percentile | "
             "max abs difference (SSIM rows) | rows differing > 1e-6 | map cells | 8-bit levels equal | "
             "differing at a level boundary | other differences | max abs map difference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in cases:
        lines.append(f"| {c['case']} | {c['setting']} | {c['rows']} | {c['unmatched']} | {c['max_abs_diff']:.3g} | "
                     f"{c['p99_abs_diff']:.3g} | "
                     f"{c['max_abs_diff_ssim']:.3g} | {c['rows_over_1e-6']} | {c['map_cells']} | {c['levels_equal']} | "
                     f"{c['levels_straddle']} | {c['levels_other']} | {c['max_abs_map_diff']:.3g} |")
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-seeds", type=int, default=2)
    parser.add_argument("--demo-epochs", type=int, default=3)
    parser.add_argument("--resnet-images", type=int, default=4)
    parser.add_argument("--variants", default="forward",
                        help=f"comma-separated settings compared with the reference, among {list(VARIANTS)}")
    parser.add_argument("--doc", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "salience_paths.json"))
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants takes {list(VARIANTS)}")
    torch.set_num_threads(1)
    cases = []
    with tempfile.TemporaryDirectory(prefix="compare-paths-") as tmp:
        cases += demo_case(Path(tmp) / "demo", args.demo_seeds, args.demo_epochs, variants)
        if args.resnet_images > 0:
            (Path(tmp) / "resnet").mkdir()
            cases += resnet_case(Path(tmp) / "resnet", args.resnet_images, variants)
    command = "python benchmarks/compare_salience_paths.py " + " ".join(argv if argv is not None else sys.argv[1:])
    publish(cases, Path(args.out), markdown(cases, command.strip()), args.doc, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
