"""benchmarks/compare_salience_paths.py: each setting's audit against the reference, row by row and level by level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from bench_scripts import load_bench
from PIL import Image

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.pipeline import run_audit
from salience_audit.data.sample import Sample


def test_forward_is_identical_and_amp_shows_its_rounding(tmp_path: Path) -> None:
    compare = load_bench("compare_salience_paths")
    bench_gpu = load_bench("bench_gpu")
    models = bench_gpu.calibrated_models("small_cnn", 2, 64, torch.device("cpu"))
    x = bench_gpu.faces(6, 64)
    samples = []
    for i in range(len(x)):
        p = tmp_path / f"face{i}.png"
        Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(p)
        samples.append(Sample(path=str(p), label=i % 2, dataset="faces"))
    base = AuditConfig(measures=("entropy", "stability", "deletion"), batch_size=4, device="cpu", deletion_steps=2,
                       gallery_size=0)

    def audit(config: AuditConfig, folder: Path) -> None:
        run_audit({"g": models}, {"faces": samples}, folder, config=config, progress=False, report=False)

    cases = compare.compare_variants(tmp_path, "small", models, x, base, ["forward", "amp+channels-last"], audit)
    forward, amp = cases
    assert forward["setting"] == "forward" and amp["setting"] == "amp+channels-last"
    for c in cases:
        assert c["unmatched"] == 0 and c["rows"] == c["rows_other"] > 0 and c["nan_pattern_differs"] == 0
        assert c["map_cells"] == 2 * 6 * 8 * 8 == c["levels_equal"] + c["levels_straddle"] + c["levels_other"]
    # the forward path repeats autograd's float operations: nothing differs
    assert forward["max_abs_diff"] == 0 and forward["rows_over_1e-6"] == 0 and forward["levels_equal"] == 768
    # bfloat16 passes change values and map levels, and the table says so
    assert amp["rows_over_1e-6"] > 0 and amp["max_abs_diff"] >= amp["p99_abs_diff"] > 0
    assert amp["levels_equal"] < 768 and amp["max_abs_map_diff"] > 1e-3
    # the models are left contiguous for whoever uses them next
    conv = next(m for m in models[0].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()
    table = compare.markdown(cases, "cmd")
    assert "| small | forward |" in table and "| small | amp+channels-last |" in table
