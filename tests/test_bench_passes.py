"""benchmarks/bench_passes.py runs on the CPU at small sizes and reports what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench


def test_bench_passes_small_run(tmp_path: Path) -> None:
    bench = load_bench("bench_passes")
    out = tmp_path / "passes.json"
    assert bench.main(["--arch", "small_cnn", "--images", "2", "--reps", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (arch,) = result["archs"]
    ways = [r["way"] for r in arch["rows"]]
    assert ways[:5] == ["inference forward", "grad-mode forward", "bare Grad-CAM pass", bench.FORWARD_ONLY,
                        "salience-audit autograd"]
    assert ways[5:] == ["pytorch-grad-cam"]  # installed with the test extras (salience-audit[byo])
    by_way = {r["way"]: r for r in arch["rows"]}
    for r in arch["rows"]:
        assert r["ms_per_image"] > 0 and r["cpu_ms_per_image"] > 0
        assert r["forward_only_speedup"] == pytest.approx(r["ms_per_image"] / by_way[bench.FORWARD_ONLY]["ms_per_image"])
    assert by_way[bench.FORWARD_ONLY]["forward_only_speedup"] == 1.0
    assert arch["max_map_difference_forward_vs_autograd"] <= 1e-5  # both ways explain the same thing
    section = bench.markdown(result)
    assert section.startswith(bench.BEGIN) and section.endswith(bench.END) and "| pytorch-grad-cam |" in section


def test_bench_passes_refuses_an_empty_batch() -> None:
    with pytest.raises(SystemExit):
        load_bench("bench_passes").main(["--arch", "small_cnn", "--images", "0"])
