"""A measure defined here, outside the package, reaches the rows, summary.json and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from golden_audit import build_inputs

import salience_audit as sa


# --- the user's measure: 13 lines ------------------------------------------------------------------
class MapSparsity(sa.measures.Measure):
    """Fraction of map cells above half the map's maximum (lower = a sparser, more focused map)."""

    name = "sparsity"
    title = "Map sparsity"
    question = "How much of the map is lit?"
    intro = "Fraction of the cells of each clean map at or above 0.5 (maps are min-max normalised)."
    outputs = (sa.measures.Output("map_sparsity", "Map sparsity", "How much of the map is lit?",
                                  "fraction of cells (0-1)", "sparsity", better="lower", primary=True),)

    def run_rows(self, ctx, run, emit):
        emit(run.name, "map_sparsity", "", (run.maps >= 0.5).double().mean(dim=(1, 2)))
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    measure = sa.measures.register(MapSparsity)
    yield measure
    sa.measures.unregister("sparsity")


def test_user_measure_reaches_rows_summary_and_report(tmp_path: Path, registered) -> None:
    groups, datasets = build_inputs(tmp_path / "in")
    config = sa.AuditConfig(measures=("entropy", "sparsity"), device="cpu", batch_size=8, shard_size=16,
                            gallery_size=1)
    result = sa.run_audit(groups, {"faces": datasets["faces"]}, tmp_path / "out", config=config, progress=False)

    mine = sa.read_results(result.out_dir).rows(measure="map_sparsity").to_table().to_pandas()
    assert len(mine) == 4 * 12  # every run x image
    # Oracle: the same fraction computed here from an independent salience pass of one run.
    model = sa.load_run(groups["alpha"][0])
    pixels = [np.asarray(Image.open(s.path).convert("RGB"), dtype=np.float32) / 255.0 for s in datasets["faces"]]
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    maps = sa.SalienceExtractor(model, "gradcam")(images).maps.detach()
    expected = (maps >= 0.5).double().mean(dim=(1, 2)).numpy()
    got = mine[mine["run"] == model.name].sort_values("index")["value"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)

    summary = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert summary["measures"]["map_sparsity"]["title"] == "Map sparsity"
    assert summary["measures"]["map_sparsity"]["better"] == "lower"
    stats = [s for s in summary["stats"] if s["measure"] == "map_sparsity" and s["dataset"] == "faces"]
    assert {s["group"] for s in stats} == {"alpha", "beta"}
    alpha = next(s for s in stats if s["group"] == "alpha")
    per_image = mine[mine["group"] == "alpha"].groupby("index")["value"].mean()
    assert alpha["mean"] == pytest.approx(float(per_image.mean()), abs=1e-12)

    html = result.report_path.read_text(encoding="utf-8")
    assert "Map sparsity" in html and "How much of the map is lit?" in html
    assert "Other measures" not in html  # described, so not in the generic section


def test_report_in_a_new_process_describes_the_measure_from_audit_json(tmp_path: Path, registered) -> None:
    """``salience-audit report`` in a process that never registered the measure still titles it."""
    from salience_audit.report.render.html import write_report
    from salience_audit.report.summary.build import write_summary

    groups, datasets = build_inputs(tmp_path / "in")
    config = sa.AuditConfig(measures=("sparsity",), device="cpu", batch_size=8, gallery_size=1)
    result = sa.run_audit({"alpha": groups["alpha"]}, {"faces": datasets["faces"][:4]}, tmp_path / "out",
                          config=config, progress=False, report=False)
    meta = json.loads((result.out_dir / "audit.json").read_text(encoding="utf-8"))
    assert meta["measure_info"]["map_sparsity"]["title"] == "Map sparsity"
    sa.measures.unregister("sparsity")
    write_summary(result.out_dir)
    html = write_report(result.out_dir).read_text(encoding="utf-8")
    assert "Map sparsity" in html


def test_registry_refuses_clashes() -> None:
    with pytest.raises(ValueError, match="already registered"):
        sa.measures.register(sa.measures.Entropy)

    class Clash(sa.measures.Measure):
        name = "clash"
        outputs = (sa.measures.Output("entropy_norm", "x", "x", "x", "clash"),)

    with pytest.raises(ValueError, match="already written"):
        sa.measures.register(Clash)
    with pytest.raises(Exception, match="unknown measure"):
        sa.AuditConfig(measures=("no-such-measure",))
