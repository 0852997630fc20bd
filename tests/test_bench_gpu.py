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
                       "--memory-arch", "small_cnn", "--memory-runs", "2", "--memory-images", "2",
                       "--settings", "off,amp+cl"]) == 0
    result = json.loads(out.read_text())
    (arch,) = result["archs"]
    settings = [(False, False), (True, True)]
    assert [(r["measure"], r["amp_bf16"], r["channels_last"]) for r in arch["rows"]] == [
        (m, amp, cl) for amp, cl in settings for m in bench.MEASURES]
    full = {r["measure"]: r for r in arch["rows"] if not r["amp_bf16"]}
    for r in arch["rows"]:
        assert r["forward_s"] > 0 and r["autograd_s"] > 0 and r["bare_s"] > 0
        assert r["speedup_forward_vs_bare"] == pytest.approx(r["bare_s"] / r["forward_s"])
        if r["amp_bf16"]:  # against the full-precision, contiguous bare passes of the same measure
            assert r["speedup_forward_vs_full_bare"] == pytest.approx(full[r["measure"]]["bare_s"] / r["forward_s"])
        else:
            assert "speedup_forward_vs_full_bare" not in r
    assert [(p["amp_bf16"], p["channels_last"]) for p in arch["projections"]] == settings
    for p in arch["projections"]:
        same = [r for r in arch["rows"] if (r["amp_bf16"], r["channels_last"]) == (p["amp_bf16"], p["channels_last"])]
        per = {r["measure"]: r["forward_s"] / r["images"] / r["runs"] for r in same}
        assert p["forward_h"] == pytest.approx(1e5 * 10 * (sum(per.values()) - 5 * per["entropy"]) / 3600)
    assert result["machine"]["amp_dtype"] == "bfloat16"
    assert {m["path"] for m in result["memory"]} == {"forward", "autograd"}
    assert all(m["peak_rss_mib"] >= m["peak_rss_after_models_mib"] > 0 for m in result["memory"])
    text = bench.markdown(result)
    assert "bench_gpu:begin" in text and "AMP on, channels-last on: forward-only" in text


def test_bench_gpu_refuses_unknown_settings(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        bench.main(["--arch", "small_cnn", "--settings", "fp8", "--out", str(tmp_path / "x.json")])


def test_memory_child_reports_its_own_peak_not_its_parents(bench) -> None:  # type: ignore[no-untyped-def]
    """The child's peak must not include what this (parent) process holds: ``ru_maxrss`` would,
    since Linux keeps it across fork + exec; the child's own address space (``VmHWM``) does not."""
    import numpy as np

    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB, touched, held by the parent while the child runs
    parent_peak = bench.peak_rss_mib()
    (res,) = [r for r in bench.bench_memory("small_cnn", 2, 2, "auto") if r["path"] == "forward"]
    assert ballast[-1] == 1.0 and parent_peak > 600
    assert res["peak_rss_mib"] < parent_peak - 300, (res, parent_peak)


def test_projection_needs_every_measure(bench) -> None:  # type: ignore[no-untyped-def]
    rows = [{"measure": "entropy", "forward_s": 1.0, "images": 1, "runs": 1}]
    assert bench.projection(rows, "forward") is None
