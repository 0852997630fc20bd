"""Synthetic result folders written straight as Parquet shards (no model), for the streaming summary.

The shards look like the audit's own (``salience_audit/audit/plan.py``, ``store.py``): one
file per (group, dataset, contiguous image range) holding every run of the group, rows
written batch by batch (within a batch: run, measure, variant, then image), stability rows
per pair of runs (``run_a`` / ``run_b``) after each batch's per-run rows, the store's row schema.

Per-image values: ``entropy_norm = 0.6 + group shift + image effect + run effect + noise``
(the group shift is what the tests plant; image effects and noise are independent per
image, run effects fixed per run and averaging to 0, so a group's mean is 0.6 + shift), ``score`` / ``correct`` from a label-dependent
score, ``stability_ssim = 0.5 + group stability shift + noise``; ``measures="full"`` adds
the other ~80 per-image rows of a default audit (noise, transforms, degradation) with
random values, for memory measurements.

Also a command that measures the peak memory of ``write_summary`` in a fresh process::

    OMP_NUM_THREADS=1 .venv/bin/python tests/streaming_fixtures.py --images 1000 10000 100000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from salience_audit.results.schema import CORE_COLUMNS, rows_table

NOISE = [f"a={a:g}" for a in (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)]
TRANSFORMS = ["identity", "flip_lr", "flip_tb", "rot90_cw", "rot90_ccw"] + [
    f"shift({dx:+d},{dy:+d})" for dx, dy in itertools.product((-16, 0, 16), repeat=2) if (dx, dy) != (0, 0)
]
EXTRA = (
    [("entropy", ""), ("spatial_entropy", "")]
    + [(m, v) for m in ("noise_score", "noise_correct", "noise_ssim", "noise_entropy") for v in NOISE]
    + [("noise_auc_score", ""), ("noise_auc_ssim", ""), ("noise_auc_entropy", "")]
    + [(m, t) for m in ("equivariance", "invariance", "transform_score_change") for t in TRANSFORMS]
    + [(m, v) for m in ("degrade_score_change", "degrade_correct", "degrade_ssim") for v in ("background", "object")]
)
"""The other per-image rows of a default audit (with entropy_norm, score, correct: 85 per image and run)."""


def _shard_table(
    group: str, dataset: str, start: int, stop: int, runs: list[str], labels: np.ndarray, shift: float,
    stab_shift: float, extra: bool, batch_size: int, rng: np.random.Generator,
) -> pa.Table:
    cols: dict[str, list[np.ndarray]] = {name: [] for name in CORE_COLUMNS}

    def add(idx: np.ndarray, run: str, measure: str, variant: str, values: np.ndarray) -> None:
        n = idx.size
        cols["dataset"].append(np.full(n, dataset, dtype=object))
        cols["path"].append(np.array([f"{dataset}/{i:07d}.png" for i in idx], dtype=object))
        cols["index"].append(idx.astype(np.int64))
        cols["label"].append(labels[idx].astype(np.int64))
        cols["group"].append(np.full(n, group, dtype=object))
        cols["run"].append(np.full(n, run, dtype=object))
        cols["measure"].append(np.full(n, measure, dtype=object))
        cols["variant"].append(np.full(n, variant, dtype=object))
        cols["value"].append(np.asarray(values, dtype=np.float64))

    for b0 in range(start, stop, batch_size):
        idx = np.arange(b0, min(b0 + batch_size, stop))
        lab = labels[idx]
        image_effect = rng.normal(0.0, 0.05, idx.size)
        for r, run in enumerate(runs):
            run_effect = 0.01 * (r - (len(runs) - 1) / 2)  # fixed per run, mean 0 over the runs
            score = np.clip(np.where(lab == 1, 0.8, 0.2) + rng.normal(0.0, 0.15, idx.size), 0.01, 0.99)
            add(idx, run, "score", "", score)
            add(idx, run, "correct", "", np.where(lab < 0, np.nan, ((score > 0.5) == (lab == 1)).astype(float)))
            ent = 0.6 + shift + image_effect + run_effect + rng.normal(0.0, 0.02, idx.size)
            add(idx, run, "entropy_norm", "", ent)
            if extra:
                for measure, variant in EXTRA:
                    add(idx, run, measure, variant, rng.random(idx.size))
        for ra, rb in itertools.combinations(runs, 2):
            add(idx, f"{ra}|{rb}", "stability_ssim", "", 0.5 + stab_shift + rng.normal(0.0, 0.05, idx.size))
    return rows_table({name: np.concatenate(parts) for name, parts in cols.items()})


def write_synthetic_audit(
    out: str | Path,
    *,
    groups: dict[str, tuple[float, float]] | None = None,
    datasets: dict[str, tuple[str, int]] | None = None,
    runs: int = 3,
    shard_size: int = 500,
    batch_size: int = 50,
    measures: str = "small",
    seed: int = 0,
) -> Path:
    """Write ``OUT/results/*.parquet`` and ``OUT/audit.json``; returns ``out``.

    Args:
        groups: name -> (entropy shift, stability shift); default three groups, ``shifted``
            with entropy +0.05 and stability +0.1, ``a`` and ``b`` identical in distribution.
        datasets: name -> (role, images); default two in-set datasets of 1000 images.
        measures: ``small`` (score, correct, entropy_norm, stability_ssim) or ``full`` (+ EXTRA).
    """
    out = Path(out)
    groups = groups or {"a": (0.0, 0.0), "b": (0.0, 0.0), "shifted": (0.05, 0.1)}
    datasets = datasets or {"d1": ("in", 1000), "d2": ("in", 1000)}
    (out / "results").mkdir(parents=True, exist_ok=True)
    meta_groups = {g: [f"{g}_s{r}" for r in range(runs)] for g in groups}
    for gi, (group, (shift, stab_shift)) in enumerate(groups.items()):
        for di, (dataset, (role, n)) in enumerate(datasets.items()):
            labels = np.where(np.arange(n) % 2 == 0, 0, 1) if role == "in" else np.full(n, -1)
            for start in range(0, n, shard_size):
                stop = min(start + shard_size, n)
                rng = np.random.default_rng([seed, gi, di, start])
                table = _shard_table(group, dataset, start, stop, meta_groups[group], labels, shift, stab_shift,
                                     measures == "full", batch_size, rng)
                pq.write_table(table, out / "results" / f"{group}__{dataset}__{start:09d}-{stop:09d}.parquet")
    meta = {
        "groups": meta_groups,
        "runs": {r: {"group": g} for g, rs in meta_groups.items() for r in rs},
        "datasets": {d: {"role": role, "n": n} for d, (role, n) in datasets.items()},
        "measures": ["entropy", "stability"],
    }
    (out / "audit.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


_CHILD = """
import sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            yield line.split()[1]
from salience_audit.report.summary.build import write_summary
import salience_audit.report.render.html, torch  # everything the summary imports, before the baseline
base = list(hwm())
t = time.perf_counter()
write_summary(sys.argv[1], n_boot=200)
print(base[0], list(hwm())[0], time.perf_counter() - t)
"""


def measure(images: list[int], runs: int, measures: str, root: Path) -> list[dict[str, float]]:
    """Peak resident memory (VmHWM) of ``write_summary`` in a fresh process, per number of images."""
    rows = []
    for n in images:
        out = root / f"n{n}"
        t0 = time.perf_counter()
        write_synthetic_audit(out, groups={"a": (0.0, 0.0), "shifted": (0.05, 0.1)},
                              datasets={"d1": ("in", n)}, runs=runs, shard_size=1024, batch_size=64,
                              measures=measures)
        written = time.perf_counter() - t0
        n_rows = sum(pq.read_metadata(p).num_rows for p in (out / "results").glob("*.parquet"))
        res = subprocess.run([sys.executable, "-c", _CHILD, str(out)], capture_output=True, text=True, check=True)
        base, peak, seconds = res.stdout.split()
        rows.append({"images": n, "rows": n_rows, "baseline_mib": int(base) / 1024, "peak_mib": int(peak) / 1024,
                     "summary_s": float(seconds), "write_s": written})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measures", choices=["small", "full"], default="full")
    parser.add_argument("--root", help="folder for the synthetic audits (default: a temporary folder)")
    args = parser.parse_args()
    if args.root:
        measure(args.images, args.runs, args.measures, Path(args.root))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(args.images, args.runs, args.measures, Path(tmp))
