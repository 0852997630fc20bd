"""benchmarks/bench_audit.py: the before/after row comparison and the public-API measure passes."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return load_bench("bench_audit")


def _rows(values: list[float], measures: list[str], extra: dict[str, list] | None = None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"dataset": ["d"] * n, "index": list(range(n)), "group": ["g"] * n, "run": ["r"] * n,
                         "measure": measures, "variant": [""] * n, "value": values, **(extra or {})})


def test_compare_rows_matches_on_the_row_key_not_on_columns_or_order(bench):  # type: ignore[no-untyped-def]
    a = _rows([0.5, float("nan"), 2.0], ["m", "m", "m"])
    b = _rows([2.0 + 1e-9, float("nan"), 0.5], ["m", "m", "m"], extra={"layout": [2, 2, 2]}).iloc[::-1]
    b["index"] = [0, 1, 2]  # reversed order, values follow their keys: row 0 -> 0.5, row 2 -> 2.0 + 1e-9
    b["value"] = [0.5, float("nan"), 2.0 + 1e-9]
    cmp = bench.compare_rows(a, b.reset_index(drop=True))
    assert cmp["same_rows"] and cmp["rows_compared"] == 3 and cmp["nan_mismatch"] == 0
    assert cmp["max_abs_diff"] == pytest.approx(1e-9, rel=1e-6)
    assert cmp["columns_added"] == ["layout"] and cmp["columns_removed"] == []


def test_compare_rows_reports_missing_rows_and_nan_changes(bench):  # type: ignore[no-untyped-def]
    a = _rows([0.5, 1.0, 2.0], ["m", "m", "m"])
    b = _rows([0.5, float("nan")], ["m", "m"])
    cmp = bench.compare_rows(a, b)
    assert not cmp["same_rows"]
    assert (cmp["rows_only_baseline"], cmp["rows_only_current"], cmp["nan_mismatch"]) == (1, 0, 1)
    assert cmp["max_abs_diff"] == 0.0
    assert math.isnan(bench.compare_rows(_rows([1.0], ["m"]), _rows([1.0], ["other"]))["max_abs_diff"])


@pytest.mark.parametrize("measure", ["noise", "transforms", "degradation"])
def test_measure_pass_packs_variants_like_the_audit_and_gives_the_same_values(bench, measure):  # type: ignore[no-untyped-def]
    """Packing variants into larger passes changes the passes, not the values (oracle: one pass per variant)."""
    from salience_audit.salience.extract import SalienceExtractor

    model = bench.models("small_cnn", 1)[0]
    explainer = SalienceExtractor(model, "gradcam")
    x = bench.faces(4, model.input_size)
    calls: list[int] = []
    counting = lambda images, target=None: calls.append(images.shape[0]) or explainer(images, target=target)  # noqa: E731
    one = bench.measure_pass(measure, [counting], x, 0)
    sizes_one, calls[:] = list(calls), []
    packed = bench.measure_pass(measure, [counting], x, 0, batch_size=12)
    assert set(sizes_one) == {4}  # default: passes of the images given
    assert 4 < max(calls) <= 12 and len(calls) < len(sizes_one)  # whole variants packed, at most 12 images
    for key, value in one.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(packed[key], value, rtol=0, atol=1e-5)
