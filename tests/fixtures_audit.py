"""Shared, session-scoped fixture for audit tests: small demo data and 2 groups x 2 trained runs.

Usage in a test module (pytest registers fixtures found in the module namespace)::

    from fixtures_audit import audit_setup  # noqa: F401  (fixture)

    def test_something(audit_setup):
        audit_setup.groups      # {"xent": [run_dir, run_dir], "cyborg": [run_dir, run_dir]}
        audit_setup.manifest    # header CSV with a few test images (dataset "faces")

Everything lives under one session temporary folder. The demo data is built with few
synthetic faces and the small CNN is trained for one epoch, so the whole setup takes a
few seconds on one CPU core; the models are not good, which is fine for tests of the
pipeline's mechanics.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

N_SYNTHETIC = 24
"""DCGAN faces in the fixture's demo data (the real class always has 100)."""

N_AUDIT_IMAGES = 24
"""Images in the fixture's audit manifest (both classes, from the held-out split)."""


@dataclass(frozen=True)
class AuditSetup:
    """What the fixture built.

    Attributes:
        root: the session folder holding everything below.
        manifest: header CSV (``split,label,path,human_map,dataset``) of the audit images,
            dataset name ``faces``.
        ood_manifest: header CSV of a few non-face patches (dataset ``non-faces``, label -1).
        groups: group name -> run folders (``xent`` and ``cyborg``, two seeds each).
    """

    root: Path
    manifest: Path
    ood_manifest: Path
    groups: dict[str, list[Path]] = field(default_factory=dict)

    def group_flags(self) -> list[str]:
        """``--group NAME=PATTERN`` CLI arguments matching exactly this fixture's runs."""
        flags: list[str] = []
        for name, runs in self.groups.items():
            flags += ["--group", f"{name}={runs[0].parent}/small_cnn-{name}-seed*"]
        return flags


def _write_subset(rows: list[dict[str, str]], root: Path, dest: Path, dataset: str) -> Path:
    """Write ``rows`` (from a demo header CSV) as a header CSV with absolute paths."""
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "label", "path", "human_map", "dataset"])
        for row in rows:
            human = row.get("human_map") or ""
            writer.writerow(
                [row["split"], row["label"], str(root / row["path"]), str(root / human) if human else "", dataset]
            )
    return dest


def _pick_balanced(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """``n`` held-out rows, alternating Real and Synthetic while both last (then train rows)."""
    test = [r for r in rows if r["split"] == "test"]
    real = [r for r in test if r["label"] == "Real"]
    fake = [r for r in test if r["label"] != "Real"]
    picked: list[dict[str, str]] = []
    for a, b in zip(real, fake):
        picked += [a, b]
    rest = [r for r in test if r not in picked] + [r for r in rows if r["split"] != "test"]
    return (picked + rest)[:n]


def build_audit_setup(root: Path, seeds: int = 2, epochs: int = 1) -> AuditSetup:
    """Build the demo data, train ``seeds`` runs per loss family, write the audit manifests."""
    from salience_audit.data.demo import build_demo_data
    from salience_audit.data.manifest import read_manifest
    from salience_audit.training.config import TrainConfig
    from salience_audit.training.trainer import train_run

    data = build_demo_data(root / "data", n_synthetic=N_SYNTHETIC)
    samples = read_manifest(data.manifest)
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "test"]
    groups: dict[str, list[Path]] = {}
    for loss in ("xent", "cyborg"):
        dirs = []
        for seed in range(seeds):
            config = TrainConfig(
                arch="small_cnn",
                loss=loss,
                epochs=epochs,
                lr=0.01,
                weights=None,
                device="cpu",
                seed=seed,
                group=f"small_cnn-{loss}",
            )
            run_dir = root / "runs" / f"small_cnn-{loss}-seed{seed}"
            train_run(config, train, val, run_dir, progress=False)
            dirs.append(run_dir)
        groups[loss] = dirs

    with data.manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    manifest = _write_subset(_pick_balanced(rows, N_AUDIT_IMAGES), data.root, root / "audit-faces.csv", "faces")
    with data.out_of_set_manifest.open(newline="", encoding="utf-8") as fh:
        ood_rows = list(csv.DictReader(fh))[:8]
    ood_manifest = _write_subset(ood_rows, data.root, root / "audit-non-faces.csv", "non-faces")
    return AuditSetup(root=root, manifest=manifest, ood_manifest=ood_manifest, groups=groups)


@pytest.fixture(scope="session")
def audit_setup(tmp_path_factory: pytest.TempPathFactory) -> AuditSetup:
    """Session-wide demo data + 2 groups x 2 one-epoch small-CNN runs (built once)."""
    return build_audit_setup(tmp_path_factory.mktemp("audit-setup"))
