"""The notebook object: lazy filtered rows, the summary table, the report inline, the README section
as written, and a query over 10^6 rows in bounded memory (measured in a fresh process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest
from tiny_data import TRAIN_TINY, tiny_dataset

import notebook_rows
from salience_audit.cli import main
from salience_audit.errors import InputError
from salience_audit.notebook import AuditResults
from salience_audit.results.reader import load_results

ROOT = Path(__file__).resolve().parent.parent
PEAK_BOUND_MIB = 500


@pytest.fixture(scope="module")
def small_audit(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebook")
    manifest = tiny_dataset(root / "data", n=6)
    assert main(["train", "--train-manifest", str(manifest), *TRAIN_TINY, "--seeds", "4", "--out",
                 str(root / "runs"), "--quiet"]) == 0
    out = root / "audit"
    assert main(["audit", "--group", f"xent={root / 'runs'}/*seed[01]", "--group", f"cyborg={root / 'runs'}/*seed[23]",
                 "--manifest", f"faces={manifest}", "--measures", "entropy,stability", "--device", "cpu",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_rows_are_lazy_and_filter_like_pandas(small_audit):
    audit = AuditResults(small_audit)
    everything = load_results(small_audit)  # oracle: every row in memory, filtered by pandas
    rows = audit.rows(measure="entropy_norm", group=["xent"])
    got = rows.to_table(columns=["run", "index", "value"]).to_pandas().sort_values(["run", "index"])
    want = everything.query("measure == 'entropy_norm' and group == 'xent'").sort_values(["run", "index"])
    assert len(got) == len(want) > 0
    assert got["value"].tolist() == pytest.approx(want["value"].tolist())
    high = audit.rows(pc.field("value") > 0.5, measure="entropy_norm").count_rows()
    assert high == int((everything.query("measure == 'entropy_norm'")["value"] > 0.5).sum())
    assert audit.rows().count_rows() == len(everything)
    with pytest.raises(InputError, match="no column"):
        audit.rows(measures="entropy")


def test_summary_is_the_reports_table_and_recomputed_when_stale(small_audit):
    audit = AuditResults(small_audit)
    table = audit.summary()
    stored = json.loads((small_audit / "summary.json").read_text())["stats"]
    assert isinstance(table, pd.DataFrame) and len(table) == len(stored)
    assert {"measure", "variant", "group", "dataset", "mean"} <= set(table.columns)
    rows = load_results(small_audit)
    for _, rec in table[(table["measure"] == "entropy_norm") & (table["dataset"] == "faces")].iterrows():
        # per-image value = mean over the group's runs; the summary's mean is over images
        per_image = rows.query("measure == 'entropy_norm' and dataset == 'faces' and group == @rec.group")
        assert rec["mean"] == pytest.approx(per_image.groupby("index")["value"].mean().mean())
    (small_audit / "summary.json").unlink()
    assert len(audit.summary()) == len(table) and (small_audit / "summary.json").is_file()


def test_report_shows_inline_and_its_path(small_audit, tmp_path):
    audit = AuditResults(small_audit)
    assert audit.report_path == small_audit / "report" / "index.html"
    page = audit._repr_html_()
    assert page.count("<iframe") == 1 and "srcdoc=" in page
    title = re.search(r"<title>(.*?)</title>", audit.report_path.read_text()).group(1)
    assert title in page.replace("&lt;", "<").replace("&gt;", ">")
    assert "audit.json" not in repr(audit) and "2 group(s), 4 run(s)" in repr(audit)
    with pytest.raises(InputError, match="not an audit folder"):
        AuditResults(tmp_path)


def _readme_notebook_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Query the results in a notebook", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_notebook_section_runs_as_written(small_audit, monkeypatch):
    blocks = _readme_notebook_blocks()
    assert blocks, "README has no python block under 'Query the results in a notebook'"
    monkeypatch.chdir(small_audit.parent)  # the README reads "audit/"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README


@pytest.mark.slow
def test_query_over_a_million_rows_stays_under_500_mib(tmp_path):
    script = str(Path(notebook_rows.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, script, "make", str(tmp_path)], check=True, env=env)
    assert sum(pq_rows(p) for p in (tmp_path / "results").glob("*.parquet")) == notebook_rows.N_ROWS == 10**6
    proc = subprocess.run([sys.executable, script, "lazy", str(tmp_path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["n_rows"] == 100_000
    expected = notebook_rows.expected_means("progan", "entropy_norm")
    assert result["means"] == pytest.approx(expected, rel=1e-12)
    assert result["peak_mib"] < PEAK_BOUND_MIB
    # the query itself (not the imports) holds far less than the 10^6 rows would (~370 MiB in pandas)
    assert result["peak_mib"] - result["after_imports_mib"] < 150


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
