"""The audit with forward-only salience: same rows as autograd, batch size auto, gallery and model cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from golden_audit import build_inputs

from salience_audit.audit import worker
from salience_audit.audit.batchsize import CPU_AUTO_BATCH, DoesNotFit, largest_fitting_batch
from salience_audit.audit.config import AuditConfig
from salience_audit.audit.pipeline import run_audit
from salience_audit.errors import InputError


def test_batch_size_auto_on_cpu_and_gallery_of_shown_runs(tmp_path: Path) -> None:
    groups, datasets = build_inputs(tmp_path)
    config = AuditConfig(measures=("entropy", "stability"), device="cpu", batch_size="auto", gallery_size=2)
    run_audit(groups, datasets, tmp_path / "audit", config=config, progress=False, report=False)
    meta = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert meta["config"]["batch_size"] == CPU_AUTO_BATCH and meta["batch_size_auto"] is True
    assert meta["config"]["salience_path"] == "auto"
    gallery = np.load(tmp_path / "audit" / "gallery.npz")
    # Only the runs the report shows (the first two of each group) are re-explained, on the images shown.
    from salience_audit.audit.gallery import RUNS_SHOWN_PER_GROUP
    from salience_audit.report.render.gallery import RUNS_PER_GROUP

    assert RUNS_SHOWN_PER_GROUP == RUNS_PER_GROUP
    shown = [r.name for runs in groups.values() for r in runs[:RUNS_SHOWN_PER_GROUP]]
    assert list(gallery["runs"]) == shown
    assert gallery["maps"].shape[:2] == (len(shown), len(gallery["paths"]))
    assert worker._MODEL_CACHE == {}  # no run stays loaded after the audit


def test_batch_size_and_salience_path_settings_are_checked() -> None:
    from salience_audit.audit.cli_commands import _int_or_text
    from salience_audit.audit.settings import settings_from_sources

    assert AuditConfig(batch_size="auto").batch_size == "auto"
    for bad in ("big", "24", 0):
        with pytest.raises(InputError, match="batch_size"):
            AuditConfig(batch_size=bad)
    with pytest.raises(InputError, match="unknown salience path 'fast'"):
        AuditConfig(salience_path="fast")
    required = {"groups": {"g": "runs/*"}, "manifests": ["m.csv"]}
    flags = {"batch_size": _int_or_text("auto"), "salience_path": "forward"}
    settings = settings_from_sources(config=required, flags=flags)
    assert settings.audit_config().batch_size == "auto" and settings.audit_config().salience_path == "forward"
    assert settings_from_sources(config=required, flags={"batch_size": _int_or_text("24")}).batch_size == 24
    with pytest.raises(InputError, match="--batch-size"):
        settings_from_sources(config=required, flags={"batch_size": _int_or_text("many")})
    with pytest.raises(InputError, match="c.yaml: salience_path"):
        settings_from_sources(config={**required, "salience_path": "both"}, config_path="c.yaml")


@pytest.mark.parametrize("limit", [1, 5, 8, 13, 64, 1000, 1024, 5000])
def test_largest_fitting_batch_finds_the_limit(limit: int) -> None:
    tried: list[int] = []

    def trial(b: int) -> None:
        tried.append(b)
        if b > limit:
            raise DoesNotFit(f"{b} > {limit}")

    assert largest_fitting_batch(trial, start=8, cap=1024) == min(limit, 1024)
    assert len(tried) <= 2 * 11 + 2


def test_largest_fitting_batch_when_nothing_fits() -> None:
    def trial(b: int) -> None:
        raise DoesNotFit("no memory")

    with pytest.raises(DoesNotFit, match="not even one image"):
        largest_fitting_batch(trial)
