"""A synthetic audit folder with 10^6 result rows, and the two ways to query it, each run in a fresh
process that prints its peak memory (used by tests/test_notebook.py and docs/notebooks.md).

    python tests/notebook_rows.py make DIR          # write DIR/audit.json + DIR/results/*.parquet
    python tests/notebook_rows.py lazy DIR          # AuditResults(DIR).rows(...) -> prints JSON
    python tests/notebook_rows.py eager DIR         # pd.read_parquet(DIR/results) (the old README way)

Layout as the audit writes it: one shard per (group, dataset, 1024 images), rows for every run of
the group x measure variant; the values are a deterministic function of (run, measure, index) so a
query's mean is known exactly without reading the files.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GROUPS = {"xent": ["xent-0", "xent-1", "xent-2", "xent-3"], "cyborg": ["cyborg-0", "cyborg-1", "cyborg-2", "cyborg-3"]}
DATASETS = {"progan": 12_500, "stylegan2": 12_500}
MEASURES = [("entropy", ""), ("entropy_norm", ""), ("spatial_entropy", ""), ("score", ""), ("correct", "")]
SHARD_IMAGES = 1024
N_ROWS = sum(DATASETS.values()) * sum(len(r) for r in GROUPS.values()) * len(MEASURES)  # 10^6


def value(run_number: int, measure_number: int, index: np.ndarray) -> np.ndarray:
    """The synthetic value of a row: a fixed function of run, measure and image index."""
    return ((index * 7919 + run_number * 104729 + measure_number * 1299709) % 10007) / 10007.0


def make(folder: Path) -> None:
    results = folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    meta = {"groups": GROUPS, "datasets": {d: {"n": n, "role": "in"} for d, n in DATASETS.items()},
            "measures": sorted({m for m, _ in MEASURES}), "method": "gradcam"}
    (folder / "audit.json").write_text(json.dumps(meta))
    runs = [r for rs in GROUPS.values() for r in rs]
    for group, members in GROUPS.items():
        for dataset, n in DATASETS.items():
            for start in range(0, n, SHARD_IMAGES):
                index = np.arange(start, min(n, start + SHARD_IMAGES))
                cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                                     ("dataset", "path", "index", "label", "group", "run",
                                                      "measure", "variant", "value")}
                for run in members:
                    for m, (measure, variant) in enumerate(MEASURES):
                        k = len(index)
                        cols["dataset"].append(np.full(k, dataset, dtype=object))
                        cols["path"].append(np.array([f"/data/{dataset}/img_{i:07d}.png" for i in index], dtype=object))
                        cols["index"].append(index)
                        cols["label"].append(index % 2)
                        cols["group"].append(np.full(k, group, dtype=object))
                        cols["run"].append(np.full(k, run, dtype=object))
                        cols["measure"].append(np.full(k, measure, dtype=object))
                        cols["variant"].append(np.full(k, variant, dtype=object))
                        cols["value"].append(value(runs.index(run), m, index))
                table = pa.table({k: np.concatenate(v) for k, v in cols.items()})
                pq.write_table(table, results / f"{group}__{dataset}__{start // SHARD_IMAGES:05d}.parquet")


def expected_means(dataset: str, measure: str) -> dict[str, float]:
    """run -> mean value over the dataset's images, from :func:`value` (no file read)."""
    runs = [r for rs in GROUPS.values() for r in rs]
    m = [name for name, _ in MEASURES].index(measure)
    index = np.arange(DATASETS[dataset])
    return {run: float(value(i, m, index).mean()) for i, run in enumerate(runs)}


def peak_mib() -> float:
    """Peak resident memory of this process (Linux ``VmHWM``).

    Not ``getrusage().ru_maxrss``: on Linux that survives fork + exec, so a process started by a
    big parent (pytest with torch loaded) would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: KiB on most systems


def lazy(folder: Path) -> dict:
    from salience_audit.notebook import AuditResults

    after_imports = peak_mib()
    audit = AuditResults(folder)
    rows = audit.rows(measure="entropy_norm", dataset="progan")
    table = rows.to_table(columns=["run", "value"])
    means = table.group_by("run").aggregate([("value", "mean")]).to_pandas()
    return {"n_rows": rows.count_rows(), "means": dict(zip(means["run"], means["value_mean"])),
            "peak_mib": peak_mib(), "after_imports_mib": after_imports}


def eager(folder: Path) -> dict:
    import pandas as pd

    after_imports = peak_mib()
    rows = pd.read_parquet(folder / "results")
    sel = rows.query("measure == 'entropy_norm' and dataset == 'progan'")
    return {"n_rows": int(len(sel)), "means": sel.groupby("run")["value"].mean().to_dict(), "peak_mib": peak_mib(),
            "after_imports_mib": after_imports, "all_rows": int(len(rows))}


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "make":
        make(where)
    else:
        print(json.dumps({"lazy": lazy, "eager": eager}[action](where)))
