"""The audit's Parquet rows are pinned: a refactoring must not change a single number.

``tests/golden/rows.parquet`` holds the rows of the deterministic audit in
``golden_audit.py`` (every measure, 2 groups x 2 runs, 12 + 4 images), written by the code
at commit 6aaee52 (before the measures became a library) and converted to row layout 2
(pairs in ``run_a`` / ``run_b``, typed variant columns) with every value unchanged. This test reruns the same audit
with the current code and requires the same set of rows (same keys, same columns) and every
value within 1e-12 (NaN where the pinned row is NaN). The pinned values come from this
project's CPU kernels with one torch thread; a different CPU instruction set could move
float32 results, which would show here as a failure to investigate, not to loosen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from golden_audit import GOLDEN_ROWS, SORT_KEYS, run_golden_audit

TOLERANCE = 1e-12
"""Also for forward-only salience (issue 15): it repeats autograd's float operations on the
gradient it derives, so the maps are bit-identical and no looser tolerance is needed."""


@pytest.mark.parametrize("salience_path", ["auto", "forward"])
def test_audit_rows_equal_the_pinned_rows(tmp_path: Path, salience_path: str) -> None:
    expected = pd.read_parquet(GOLDEN_ROWS)
    actual = run_golden_audit(tmp_path, salience_path=salience_path)

    assert list(actual.columns) == list(expected.columns)
    keys = SORT_KEYS
    expected_keys = set(map(tuple, expected[keys].to_numpy()))
    actual_keys = set(map(tuple, actual[keys].to_numpy()))
    missing, extra = sorted(expected_keys - actual_keys), sorted(actual_keys - expected_keys)
    assert not missing and not extra, f"rows missing: {missing[:5]} ({len(missing)}); new rows: {extra[:5]} ({len(extra)})"
    assert len(actual) == len(expected), "duplicate row keys"

    merged = expected.merge(actual, on=keys, suffixes=("_expected", "_actual"), validate="one_to_one")
    for col in ("index", "label", "transform"):
        np.testing.assert_array_equal(merged[f"{col}_actual"], merged[f"{col}_expected"], err_msg=col)
    for col in ("noise_amount", "shift_dx", "shift_dy"):  # typed variant columns (NaN where they do not apply)
        np.testing.assert_array_equal(merged[f"{col}_actual"].to_numpy(dtype=np.float64),
                                      merged[f"{col}_expected"].to_numpy(dtype=np.float64), err_msg=col)
    a = merged["value_actual"].to_numpy(dtype=np.float64)
    e = merged["value_expected"].to_numpy(dtype=np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(e)), "NaN pattern differs"
    diff = np.abs(a - e)
    diff[np.isnan(diff)] = 0.0
    worst = int(np.argmax(diff))
    assert diff[worst] <= TOLERANCE, (
        f"{int((diff > TOLERANCE).sum())} values differ; worst {diff[worst]:.3g} at "
        f"{merged.loc[worst, keys].to_dict()}"
    )


def test_golden_audit_covers_every_measure() -> None:
    """The pinned rows exercise every row measure, both classes and non-trivial values."""
    rows = pd.read_parquet(GOLDEN_ROWS)
    measures = set(rows["measure"])
    for prefix in ("entropy", "noise_", "equivariance", "invariance", "stability_", "degrade_", "deletion_auc",
                   "insertion_auc", "human_", "score", "correct"):
        assert any(m.startswith(prefix) for m in measures), prefix
    assert set(rows["group"]) >= {"alpha", "beta", "human"}
    predicted_synthetic = rows[(rows["measure"] == "score") & (rows["dataset"] == "faces")]["value"] > 0.5
    assert 0.2 < predicted_synthetic.mean() < 0.8, "both classes must be predicted"
    with pytest.raises(AssertionError):  # the comparison itself can fail
        np.testing.assert_allclose(rows["value"].fillna(0) + 1e-9, rows["value"].fillna(0), rtol=0, atol=TOLERANCE)


def test_pinned_rows_use_row_layout_2() -> None:
    """Pairs of runs in run_a / run_b (run empty), variant parameters as typed columns beside the label."""
    rows = pd.read_parquet(GOLDEN_ROWS)
    pairs = rows[rows["measure"].str.startswith("stability_")]
    assert len(pairs) and (pairs["run"] == "").all() and (pairs["run_a"] != "").all() and (pairs["run_b"] != "").all()
    assert not rows["run"].str.contains("|", regex=False).any()
    noise = rows[rows["variant"].str.startswith("a=")]
    assert np.allclose(noise["noise_amount"], noise["variant"].str[2:].astype(float))
    shifts = rows[rows["variant"].str.startswith("shift(")]
    assert (shifts["transform"] == "shift").all() and set(shifts["shift_dx"].abs()) == {0, 5}
    assert (rows.loc[rows["variant"] == "flip_lr", "transform"] == "flip_lr").all()
    assert rows.loc[~rows["variant"].str.startswith("a="), "noise_amount"].isna().all()
