"""benchmarks/bench_gpu.py runs on the CPU at small sizes and reports what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return load_bench("bench_gpu")


def test_bench_gpu_small_run(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "gpu.json"
    assert bench.main(["--arch", "small_cnn", "--images", "2", "--batch", "2", "--out", str(out), "--memory",
                       "--memory-arch", "small_cnn", "--memory-runs", "2", "--memory-images", "2"]) == 0
    result = json.loads(out.read_text())
    (arch,) = result["archs"]
    assert [r["measure"] for r in arch["rows"]] == list(bench.MEASURES)
    for r in arch["rows"]:
        assert r["forward_s"] > 0 and r["autograd_s"] > 0 and r["bare_s"] > 0
        assert r["speedup_forward_vs_bare"] == pytest.approx(r["bare_s"] / r["forward_s"])
        assert not r["amp_bf16"] and not r["channels_last"]  # CUDA-only settings are not timed on the CPU
    per = {r["measure"]: r["forward_s"] / r["images"] / r["runs"] for r in arch["rows"]}
    expected = 1e5 * 10 * (sum(per.values()) - 5 * per["entropy"]) / 3600
    assert arch["projection_forward_h"] == pytest.approx(expected)
    assert {m["path"] for m in result["memory"]} == {"forward", "autograd"}
    assert all(m["ru_maxrss_mib"] >= m["ru_maxrss_after_models_mib"] > 0 for m in result["memory"])
    assert "bench_gpu:begin" in bench.markdown(result)


def test_projection_needs_every_measure(bench) -> None:  # type: ignore[no-untyped-def]
    rows = [{"measure": "entropy", "forward_s": 1.0, "images": 1, "runs": 1}]
    assert bench.projection(rows, "forward") is None
