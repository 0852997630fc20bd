"""Row layout 2: pairs in run_a / run_b, typed variant columns; both layouts read the same; docs example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from streaming_fixtures import write_synthetic_audit

from salience_audit.results.reader import load_results
from salience_audit.results.schema import (
    CORE_COLUMNS,
    ROW_SCHEMA,
    RowBuffer,
    rows_table,
    schema_description,
    variant_parameters,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_variant_parameters() -> None:
    assert variant_parameters("a=0.05") == (0.05, None, None, None)
    assert variant_parameters("a=1") == (1.0, None, None, None)
    assert variant_parameters("shift(+16,-16)") == (None, "shift", 16, -16)
    assert variant_parameters("shift(-5,+0)") == (None, "shift", -5, 0)
    assert variant_parameters("rot90_ccw") == (None, "rot90_ccw", None, None)
    for other in ("", "object", "background", "all", "a=x"):
        assert variant_parameters(other) == (None, None, None, None)


def test_row_buffer_writes_pairs_and_typed_columns() -> None:
    buf = RowBuffer()
    common = dict(dataset="d", paths=["p0", "p1"], indices=np.arange(2), labels=np.array([0, 1]), group="g")
    buf.add(**common, run="r0", measure="noise_ssim", variant="a=0.25", values=np.array([0.5, 0.6]))
    buf.add(**common, run="r0", run_b="r1", measure="stability_ssim", variant="", values=np.array([0.7, 0.8]))
    table = buf.to_table()
    assert table.schema == ROW_SCHEMA and schema_description()["version"] == 2
    rows = table.to_pylist()
    assert [r["run"] for r in rows] == ["r0", "r0", None, None]
    assert [r["run_a"] for r in rows] == [None, None, "r0", "r0"] and [r["run_b"] for r in rows] == [None, None, "r1", "r1"]
    rows = table.to_pandas()
    assert rows["noise_amount"].tolist()[:2] == [0.25, 0.25] and rows["noise_amount"][2:].isna().all()
    # the summary's core rows: a pair's run is the key "r0|r1", as in layout 1
    core = load_rows_of(table)
    assert list(core.columns) == CORE_COLUMNS and core["run"].tolist() == ["r0", "r0", "r0|r1", "r0|r1"]


def load_rows_of(table) -> pd.DataFrame:
    from salience_audit.results.reader import normalize_rows

    return normalize_rows(table.to_pandas())


def test_both_layouts_read_the_same(tmp_path: Path) -> None:
    out = write_synthetic_audit(tmp_path / "v2", datasets={"d1": ("in", 40)}, runs=3, shard_size=20)
    v2 = load_results(out)
    v1_dir = tmp_path / "v1" / "results"
    v1_dir.mkdir(parents=True)
    for path in sorted((out / "results").glob("*.parquet")):
        rows = pq.read_table(path).to_pandas()
        pair = rows["run"].isna()
        rows.loc[pair, "run"] = rows.loc[pair, "run_a"] + "|" + rows.loc[pair, "run_b"]
        rows[CORE_COLUMNS].to_parquet(v1_dir / path.name, index=False)
    (tmp_path / "v1" / "audit.json").write_text((out / "audit.json").read_text())
    v1 = load_results(tmp_path / "v1")
    pd.testing.assert_frame_equal(v1, v2)
    assert v2["run"].str.contains("|", regex=False).sum() == 40 * 3 * 3  # 3 groups x 3 pairs x 40 images


def test_docs_query_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert blocks
    out = write_synthetic_audit(tmp_path / "a", datasets={"d1": ("in", 30)}, runs=3, shard_size=30, measures="full")
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)  # noqa: S102 - the documentation's own example
    curve = scope["noise_curve"](out / "results")
    assert curve.index.get_level_values("noise_amount").dtype == np.float64 and len(curve) == 3 * 8
    matrix = scope["pair_matrix"](out / "results", "a")
    assert matrix.shape == (2, 2) and matrix.notna().sum().sum() == 3  # pairs (s0,s1), (s0,s2), (s1,s2)


def test_rows_table_from_core_columns() -> None:
    cols = {c: np.array(v, dtype=object) for c, v in {
        "dataset": ["d"] * 2, "path": ["x", "y"], "group": ["g"] * 2, "run": ["a", "a|b"],
        "measure": ["equivariance", "stability_ssim"], "variant": ["shift(+16,+0)", ""]}.items()}
    cols.update(index=np.array([0, 1]), label=np.array([0, 0]), value=np.array([0.1, 0.2]))
    rows = rows_table(cols).to_pylist()
    assert [r["run"] for r in rows] == ["a", None] and [r["run_a"] for r in rows] == [None, "a"]
    assert [r["transform"] for r in rows] == ["shift", None] and rows[0]["shift_dx"] == 16 and rows[1]["shift_dx"] is None
