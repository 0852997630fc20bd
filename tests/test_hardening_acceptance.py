"""Acceptance: an audit over a manifest with 5% corrupted files, run with ``--on-bad-image skip``,
finishes, lists exactly those files in ``rejected.csv`` (and in the report), and its
per-sample results for the good files equal those of an audit over the clean manifest.

Uses the shared fixture of ``fixtures_audit`` (demo faces, small CNNs trained one epoch).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pandas as pd

from fixtures_audit import audit_setup  # noqa: F401  (pytest fixture)
from hardening_fixtures import audit, rejected, rows

N_IMAGES = 40
CORRUPT = {6: "truncated", 23: "not an image"}  # 2 of 40 = 5%


def _copy_subset(setup, dest: Path) -> list[dict[str, str]]:
    """Copy N_IMAGES demo images (and their human maps) under ``dest``; rows with relative paths."""
    source = setup.root / "data"
    with (source / "demo.csv").open(newline="", encoding="utf-8") as fh:
        all_rows = list(csv.DictReader(fh))
    real = [r for r in all_rows if r["label"] == "Real"]
    fake = [r for r in all_rows if r["label"] != "Real"]
    picked = [r for pair in zip(real, fake) for r in pair][:N_IMAGES]
    out = []
    for r in picked:
        for key in ("path", "human_map"):
            if r[key]:
                (dest / r[key]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / r[key], dest / r[key])
        out.append({"split": "test", "label": r["label"], "path": r["path"], "human_map": r["human_map"]})
    return out


def _write(rows_: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "label", "path", "human_map"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows_)
    return path


def test_five_percent_corrupted_files_are_skipped_and_the_rest_is_unchanged(tmp_path, capsys, audit_setup):  # noqa: F811
    data = tmp_path / "data"
    listed = _copy_subset(audit_setup, data)
    assert len(listed) == N_IMAGES
    full = _write(listed, data / "with-corrupt.csv")
    clean = _write([r for k, r in enumerate(listed) if k not in CORRUPT], data / "clean.csv")
    for k, how in CORRUPT.items():
        path = data / listed[k]["path"]
        if how == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        else:
            path.write_text("<html>404 Not Found</html>")

    common = [*audit_setup.group_flags(), "--device", "cpu", "--quiet", "--batch-size", "8", "--shard-size", "16",
              "--measures", "entropy,noise,stability,degradation,human"]
    out_skip, out_clean = tmp_path / "skip", tmp_path / "clean"
    code, stdout, err = audit(capsys, *common, "--manifest", f"faces={full}", "--out", str(out_skip),
                              "--on-bad-image", "skip")
    assert code == 0, err
    assert f"rejected: 2 images, listed in {out_skip / 'rejected.csv'}" in stdout

    rej = rejected(out_skip)
    assert rej[["path", "line"]].values.tolist() == [[listed[k]["path"], k + 2] for k in sorted(CORRUPT)]
    assert "truncated" in rej.loc[0, "reason"] and "not an image file" in rej.loc[1, "reason"]
    assert json.loads((out_skip / "audit.json").read_text())["rejected"] == 2
    html = (out_skip / "report" / "index.html").read_text(encoding="utf-8")
    assert re.search(r"Rejected images[^<]*</[^>]+>\s*<[^>]+>\s*2\s*<", html), "the report shows the count"
    assert "2 image(s) could not be used" in html and "rejected.csv" in html  # and says so in the overview

    code, _, err = audit(capsys, *common, "--manifest", f"faces={clean}", "--out", str(out_clean), "--no-report")
    assert code == 0, err
    assert rejected(out_clean).empty

    skipped, reference = rows(out_skip), rows(out_clean)
    assert len(reference) > 0
    assert set(skipped["path"]) == {r["path"] for k, r in enumerate(listed) if k not in CORRUPT}
    pd.testing.assert_frame_equal(skipped, reference, check_exact=True)
