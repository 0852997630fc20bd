"""`salience-audit audit` on the original study's CSV format, two groups of two runs each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_audit import audit_setup  # noqa: F401  (session fixture)

from salience_audit.cli import main
from salience_audit.errors import EXIT_BAD_INPUT


def _study_csv(header_manifest: Path, dest: Path, root: Path) -> int:
    """Rewrite a header manifest as the original study's CSV: no header, split,label,/path."""
    with header_manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with dest.open("w", newline="", encoding="utf-8") as fh:
        for row in rows:
            rel = "/" + str(Path(row["path"]).relative_to(root))
            label = "Real" if row["label"] in ("Real", "0") else "Synthetic"
            fh.write(f"test,{label},{rel}\n")
    return len(rows)


def test_audit_on_original_study_csv(audit_setup, tmp_path, capsys):  # noqa: F811
    root = audit_setup.root / "data"
    manifest = tmp_path / "progan.csv"
    n = _study_csv(audit_setup.manifest, manifest, root)
    out = tmp_path / "audit"
    argv = [
        "audit",
        *audit_setup.group_flags(),
        "--manifest", str(manifest),
        "--root", str(root),
        "--human-maps", str(root / "annotations"),
        "--measures", "entropy,stability,transforms,human",
        "--batch-size", "16",
        "--device", "cpu",
        "--out", str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed

    all_rows = pd.read_parquet(out / "results")
    assert set(all_rows["dataset"]) == {"progan"}  # dataset named after the manifest file
    # the human maps' own entropy, computed without any model, under the reference group 'human'
    human = all_rows[all_rows["group"] == "human"]
    assert set(human["measure"]) == {"entropy", "entropy_norm", "spatial_entropy"}
    assert len(human) == 3 * n and set(human["run"]) == {"human annotations"}
    _check_human_entropy_against_skimage(human, root / "annotations", all_rows)
    rows = all_rows[all_rows["group"] != "human"]
    assert set(rows["group"]) == {"xent", "cyborg"}
    runs = set(rows["run"].dropna())
    assert len(runs) == 4
    # row layout 2: pairs of runs in run_a / run_b (no packed "a|b"), typed variant columns
    pairs = rows[rows["run"].isna()]
    assert set(pairs["measure"]) == {"stability_ssim", "stability_spearman", "stability_iou"}
    assert set(pairs["run_a"]) | set(pairs["run_b"]) == runs and pairs["run_a"].notna().all()
    noisy = rows[rows["variant"].str.startswith("a=")]  # (noise is not among this audit's measures)
    assert (noisy["noise_amount"] == noisy["variant"].str[2:].astype(float)).all()
    shifted = rows[rows["variant"].str.startswith("shift(")]
    assert len(shifted) and (shifted["transform"] == "shift").all() and shifted["shift_dx"].notna().all()
    meta = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert meta["row_schema"]["version"] == 2 and list(meta["row_schema"]["columns"]) == list(rows.columns)
    # one row per image x run for each per-run measure, nothing duplicated
    ent = rows[rows["measure"] == "entropy_norm"]
    assert len(ent) == 4 * n
    assert not ent.duplicated(["run", "index"]).any()
    assert sorted(ent["index"].unique()) == list(range(n))
    # paths are kept as written in the manifest (root-relative, with the leading slash)
    assert all(p.startswith("/") for p in ent["path"])
    # stability: one pair per group of two runs, for every image
    stab = rows[rows["measure"] == "stability_ssim"]
    assert len(stab) == 2 * n and set(stab["group"]) == {"xent", "cyborg"}
    # human maps were found through --human-maps and compared
    assert (rows["measure"] == "human_ssim").sum() == 4 * n
    # 13 transform variants per image and run
    eq = rows[rows["measure"] == "equivariance"]
    assert eq.groupby("run")["variant"].nunique().eq(13).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["audit"]["groups"]["xent"] and summary["audit"]["groups"]["cyborg"]
    html = (out / "report" / "index.html").read_text()
    assert "progan" in html and "xent" in html and "cyborg" in html
    assert np.isfinite(ent["value"]).all()


def _check_human_entropy_against_skimage(human: pd.DataFrame, maps_dir: Path, rows: pd.DataFrame) -> None:
    """Entropy of a human map = scikit-image's shannon_entropy of its 8-bit map at the models' map size."""
    import torch
    from PIL import Image
    from skimage.measure import shannon_entropy

    map_h = 8  # small CNN at 64 px
    for _, row in human[human["measure"] == "entropy"].head(3).iterrows():
        name = Path(row["path"]).name
        raw = np.asarray(Image.open(maps_dir / name).convert("L"), dtype=np.float64) / 255.0
        big = torch.nn.functional.interpolate(torch.from_numpy(raw)[None, None], size=(64, 64), mode="bilinear",
                                              antialias=True, align_corners=False)
        small = torch.nn.functional.interpolate(big, size=(map_h, map_h), mode="area")[0, 0].numpy()
        span = small.max() - small.min()
        norm = (small - small.min()) / span if span > 1e-12 else np.zeros_like(small)
        q = np.floor(np.clip(norm, 0, 1) * 255).astype(np.uint8)
        assert row["value"] == pytest.approx(shannon_entropy(q), abs=1e-6), name


def test_audit_config_file_equals_flags(audit_setup, tmp_path):  # noqa: F811
    """A YAML config file says the same as the flags (and flags override it)."""
    config = tmp_path / "audit.yaml"
    groups = {name: f"{runs[0].parent}/small_cnn-{name}-seed*" for name, runs in audit_setup.groups.items()}
    config.write_text(
        "groups:\n"
        + "".join(f"  {k}: '{v}'\n" for k, v in groups.items())
        + f"manifests: ['{audit_setup.manifest}']\n"
        + "measures: entropy\nbatch_size: 8\ndevice: cpu\nmethod: cam\n"
    )
    out = tmp_path / "from-config"
    assert main(["audit", "--config", str(config), "--out", str(out), "--no-report", "--quiet"]) == 0
    meta = json.loads((out / "audit.json").read_text())
    assert meta["method"] == "cam" and meta["measures"] == ["entropy"]
    rows = pd.read_parquet(out / "results")
    assert set(rows["measure"]) == {"score", "correct", "entropy", "entropy_norm", "spatial_entropy"}


def test_audit_missing_group_pattern_is_a_clear_error(audit_setup, tmp_path, capsys):  # noqa: F811
    code = main(["audit", "--group", "x=/nonexistent/run-*", "--manifest", str(audit_setup.manifest),
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == EXIT_BAD_INPUT
    assert "no run folder" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def test_threshold_sets_the_decision_everywhere(audit_setup, tmp_path):  # noqa: F811
    """--threshold: per-image correctness and the detection metrics both use score > threshold."""
    out = tmp_path / "t"
    assert main(["audit", *audit_setup.group_flags(), "--manifest", str(audit_setup.manifest), "--measures", "entropy",
                 "--threshold", "0.52", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    rows = pd.read_parquet(out / "results")
    wide = rows[rows["measure"].isin(["score", "correct"])].pivot_table(
        index=["run", "index"], columns="measure", values="value").join(
        rows.drop_duplicates(["run", "index"]).set_index(["run", "index"])["label"])
    expected = ((wide["score"] > 0.52).astype(int) == wide["label"]).astype(float)
    assert (wide["correct"] == expected).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["detection_threshold"] == 0.52
    run = next(iter(audit_setup.groups["xent"])).name
    sub = wide.loc[run]
    acc = next(r for r in summary["detection"]["per_run"] if r["run"] == run and r["dataset"] == "faces")["accuracy"]
    assert acc == pytest.approx(float(((sub["score"] > 0.52).astype(int) == sub["label"]).mean()))
    assert "0.52 threshold" in (out / "report" / "index.html").read_text()
