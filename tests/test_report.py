"""Report: summary numbers, figures, self-contained HTML and Markdown, on a synthetic audit folder.

The synthetic audit has two groups x 3 runs: ``xent`` (plain) and ``<b>g</b>`` (guided, by
its runs' ``loss`` metadata), two in-set datasets x 20 images, a small out-of-set dataset,
and a gallery. The guided group has a known lower entropy and higher cross-run stability.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salience_audit.report.aggregate import POOLED
from salience_audit.report.formatting import fmt_ci, fmt_num, fmt_p
from salience_audit.report.html import write_report
from salience_audit.report.summary import load_results, summarize, write_summary

GUIDED = "<b>g</b>"
PLAIN = "xent"
GROUPS = {PLAIN: ["xent_s0", "xent_s1", "xent_s2"], GUIDED: ["g_s0", "g_s1", "g_s2"]}
DATASETS = {"stylegan2": ("in", 20), "progan": ("in", 20), "unseen": ("out-of-set", 8)}
NOISE = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
TRANSFORMS = ["identity", "flip_lr", "flip_tb"] + [
    f"shift({dx:+d},{dy:+d})" for dx, dy in itertools.product((-16, 0, 16), repeat=2) if (dx, dy) != (0, 0)
] + ["rot90_cw", "rot90_ccw"]
SCRIPT_NAME = "stylegan2/<script>.png"
ENTROPY_SHIFT = -0.15  # guided minus plain


def _image_paths(dataset: str, n: int) -> list[str]:
    paths = [f"{dataset}/img_{i:03d}.png" for i in range(n)]
    if dataset == "stylegan2":
        paths[0] = SCRIPT_NAME
    return paths


def build_synthetic_audit(out: Path, seed: int = 0, entropy_shift: float = ENTROPY_SHIFT) -> Path:
    """Write results/*.parquet, audit.json, gallery.npz and mean_maps.npz of a small synthetic audit."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []

    def add(ds, path, idx, label, group, run, measure, variant, value):
        rows.append(dict(dataset=ds, path=path, index=idx, label=label, group=group, run=run,
                         measure=measure, variant=variant, value=float(value)))

    for ds, (role, n) in DATASETS.items():
        paths = _image_paths(ds, n)
        labels = np.where(np.arange(n) % 2 == 0, 0, 1) if role == "in" else np.full(n, -1)
        image_effect = rng.normal(0, 0.04, n)
        for group, runs in GROUPS.items():
            guided = group == GUIDED
            for r, run in enumerate(runs):
                run_effect = rng.normal(0, 0.01)
                for i in range(n):
                    lab = int(labels[i])
                    base = dict(ds=ds, path=paths[i], idx=i, label=lab, group=group, run=run)
                    p_syn = np.clip((0.8 if lab == 1 else 0.2) + rng.normal(0, 0.15), 0.01, 0.99)
                    add(**base, measure="score", variant="", value=p_syn)
                    add(**base, measure="correct", variant="",
                        value=np.nan if lab < 0 else float((p_syn > 0.5) == (lab == 1)))
                    ent = 0.70 + (entropy_shift if guided else 0.0) + image_effect[i] + run_effect
                    ent += 0.1 if role != "in" else 0.0
                    add(**base, measure="entropy_norm", variant="", value=ent)
                    add(**base, measure="entropy", variant="", value=ent * math.log2(49))
                    add(**base, measure="spatial_entropy", variant="", value=0.9 + rng.normal(0, 0.02))
                    if ds == "stylegan2" and i < 10:
                        add(**base, measure="human_ssim", variant="", value=(0.5 if guided else 0.3) + rng.normal(0, .05))
                        add(**base, measure="human_spearman", variant="", value=(0.6 if guided else 0.4) + rng.normal(0, .05))
                    for a in NOISE:
                        v = f"a={a:g}"
                        add(**base, measure="noise_score", variant=v, value=np.clip(p_syn + 0.4 * a, 0, 1))
                        add(**base, measure="noise_correct", variant=v, value=np.nan if lab < 0 else float(a < 0.3))
                        add(**base, measure="noise_ssim", variant=v, value=1.0 - a * (0.5 if guided else 0.8))
                        add(**base, measure="noise_entropy", variant=v, value=ent + 0.2 * a)
                    add(**base, measure="noise_auc_score", variant="", value=p_syn + 0.2)
                    add(**base, measure="noise_auc_ssim", variant="", value=1 - (0.25 if guided else 0.4))
                    add(**base, measure="noise_auc_entropy", variant="", value=ent + 0.1)
                    for t in TRANSFORMS:
                        eq = 1.0 if t == "identity" else (0.8 if guided else 0.6) + rng.normal(0, 0.05)
                        add(**base, measure="equivariance", variant=t, value=eq)
                        add(**base, measure="invariance", variant=t, value=1.0 if t == "identity" else 0.5)
                        add(**base, measure="transform_score_change", variant=t,
                            value=0.0 if t == "identity" else rng.normal(0, 0.05))
                    for mode, drop in (("background", 0.05), ("object", 0.35 if guided else 0.2)):
                        sign = -1.0 if lab == 1 else 1.0
                        add(**base, measure="degrade_score_change", variant=mode, value=sign * drop)
                        add(**base, measure="degrade_correct", variant=mode,
                            value=np.nan if lab < 0 else float(rng.random() > drop))
                        add(**base, measure="degrade_ssim", variant=mode, value=0.7 if mode == "background" else 0.4)
                    add(**base, measure="deletion_auc", variant="", value=0.3 + rng.normal(0, 0.02))
                    add(**base, measure="insertion_auc", variant="", value=0.7 + rng.normal(0, 0.02))
                    add(**base, measure="deletion_auc_random", variant="", value=0.5)
                    add(**base, measure="insertion_auc_random", variant="", value=0.5)
            for ra, rb in itertools.combinations(runs, 2):
                for i in range(n):
                    base = dict(ds=ds, path=paths[i], idx=i, label=int(labels[i]), group=group, run=f"{ra}|{rb}")
                    stab = (0.75 if guided else 0.45) + rng.normal(0, 0.05)
                    add(**base, measure="stability_ssim", variant="", value=stab)
                    add(**base, measure="stability_spearman", variant="", value=stab + 0.1)
                    add(**base, measure="stability_iou", variant="", value=stab - 0.2)

    frame = pd.DataFrame(rows)
    (out / "results").mkdir(parents=True, exist_ok=True)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(out / "results" / "shard-000.parquet", index=False)
    frame.iloc[half:].to_parquet(out / "results" / "shard-001.parquet", index=False)

    runs_meta = {}
    for group, runs in GROUPS.items():
        for s, run in enumerate(runs):
            runs_meta[run] = {"group": group, "arch": "resnet50", "seed": s, "path": f"runs/{run}",
                              "val_acc": 0.95 - 0.004 * s - (0.02 if run == "xent_s2" else 0.0),
                              "loss": "cyborg" if group == GUIDED else "xent"}
    meta = {
        "version": "0.1.0", "created": "2024-01-01T00:00:00Z",
        "command": "salience-audit audit --runs runs/ --out OUT", "method": "gradcam",
        "measures": ["entropy", "noise", "transforms", "stability", "degradation", "human"],
        "groups": GROUPS, "runs": runs_meta,
        "datasets": {ds: {"n": n, "role": role} for ds, (role, n) in DATASETS.items()},
        "noise_levels": NOISE, "transform_variants": TRANSFORMS, "input_size": 64, "map_size": [7, 7],
        "rejected": 2,
    }
    (out / "audit.json").write_text(json.dumps(meta), encoding="utf-8")

    k, size = 3, 32
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.stack([np.stack([(xx * 8) % 256, (yy * 8) % 256, np.full_like(xx, 60 * j)], -1)
                       for j in range(k)]).astype(np.uint8)
    run_names = [r for runs in GROUPS.values() for r in runs]
    run_groups = [g for g, runs in GROUPS.items() for _ in runs]
    maps = rng.random((len(run_names), k, 7, 7)).astype(np.float32)
    np.savez_compressed(
        out / "gallery.npz", images=images,
        paths=np.array([SCRIPT_NAME, "progan/img_001.png", "stylegan2/img_002.png"]),
        datasets=np.array(["stylegan2", "progan", "stylegan2"]), labels=np.array([0, 1, 0]),
        reasons=np.array(["most stable", "least stable", "example"]), maps=maps,
        runs=np.array(run_names), run_groups=np.array(run_groups),
    )
    mean_maps = {f"{run}::{ds}": rng.random((7, 7)) for run in run_names for ds in DATASETS}
    np.savez_compressed(out / "mean_maps.npz", **mean_maps)
    return out
