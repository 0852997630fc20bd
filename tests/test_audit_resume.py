"""A killed audit resumes to exactly the rows of an uninterrupted one.

The audit runs as a real ``salience-audit audit`` subprocess; it is SIGKILLed as soon as
its first shard file appears, then the same command runs again. The rows (sorted by every
key column) must equal those of an uninterrupted audit in another folder, with no row
missing or duplicated, the shards finished before the kill left untouched, and no
temporary file left behind or read.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures_audit import AuditSetup, audit_setup  # noqa: F401  (session fixture)

from salience_audit.cli import main as cli_main
from salience_audit.errors import EXIT_BAD_INPUT
from salience_audit.results.store import ResultStore

SHARD_SIZE = 4
MEASURES = "entropy,stability,noise"
KEYS = ["dataset", "group", "run", "measure", "variant", "index"]


def _audit_args(setup: AuditSetup, out: Path, measures: str = MEASURES) -> list[str]:
    return [
        "audit",
        *setup.group_flags(),
        "--manifest",
        str(setup.manifest),
        "--out",
        str(out),
        "--measures",
        measures,
        "--shard-size",
        str(SHARD_SIZE),
        "--batch-size",
        str(SHARD_SIZE),
        "--device",
        "cpu",
        "--gallery-size",
        "1",
        "--no-report",
        "--quiet",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # One thread everywhere: the same arithmetic in every process (and a light load on CI).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return env


def _cli(setup: AuditSetup, out: Path, measures: str = MEASURES) -> list[str]:
    return [sys.executable, "-m", "salience_audit.cli", *_audit_args(setup, out, measures)]


def _rows(out: Path) -> pd.DataFrame:
    rows = ResultStore(out).read_rows()
    return rows.sort_values(KEYS, kind="stable").reset_index(drop=True)


def _n_shards(setup: AuditSetup) -> int:
    n_images = sum(1 for _ in setup.manifest.open(encoding="utf-8")) - 1
    return len(setup.groups) * -(-n_images // SHARD_SIZE)


def _temporaries(out: Path) -> list[Path]:
    return [p for folder in ("results", "aggregates") for p in (out / folder).glob(".*.tmp")]


@pytest.fixture(scope="module")
def reference(audit_setup: AuditSetup, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """An uninterrupted audit: the same command line, run in this process (one thread, as the subprocesses)."""
    out = tmp_path_factory.mktemp("audit-reference") / "audit"
    assert cli_main(_audit_args(audit_setup, out)) == 0
    assert len(list((out / "results").glob("*.parquet"))) == _n_shards(audit_setup)
    return out


def test_killed_audit_resumes_to_identical_rows(audit_setup: AuditSetup, reference: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "audit"
    results = out / "results"
    proc = subprocess.Popen(
        _cli(audit_setup, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    try:
        while not list(results.glob("*.parquet")):
            assert proc.poll() is None, f"audit ended before its first shard was written: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no shard file appeared within 240 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    finished = {p: p.stat().st_mtime_ns for p in results.glob("*.parquet")}
    total = _n_shards(audit_setup)
    assert 1 <= len(finished) < total, f"kill came too late to test resuming ({len(finished)}/{total} shards)"
    assert not (out / "audit.json").exists()

    proc = subprocess.run(_cli(audit_setup, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Shards finished before the kill were trusted, not recomputed.
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was rewritten"
    assert sorted(p.name for p in results.iterdir()) == sorted(p.name for p in (reference / "results").iterdir())
    assert _temporaries(out) == []

    got, want = _rows(out), _rows(reference)
    assert not got.duplicated(KEYS).any(), "duplicated rows after resume"
    pd.testing.assert_frame_equal(got, want, check_exact=True)

    # Side aggregates (mean maps) merge to the same sums.
    with np.load(out / "mean_maps.npz") as a, np.load(reference / "mean_maps.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_half_written_shard_is_ignored(audit_setup: AuditSetup, reference: Path, tmp_path: Path) -> None:  # noqa: F811
    """A crash in the middle of writing leaves a temporary file (or a truncated file): never trusted."""
    out = tmp_path / "audit"
    shutil.copytree(reference, out)
    shards = sorted((out / "results").glob("*.parquet"))
    victim, truncated = shards[0], shards[-1]
    blob = victim.read_bytes()
    # What an interrupted atomic write leaves: a hidden temporary beside the missing shard.
    (out / "results" / f".{victim.name}.k1ll3d.tmp").write_bytes(blob[: len(blob) // 2])
    victim.unlink()
    # A shard file cut short by something outside the audit (a failed copy): unreadable footer.
    truncated.write_bytes(truncated.read_bytes()[:100])

    with pytest.raises(Exception):
        pq.read_metadata(truncated)
    assert cli_main(_audit_args(audit_setup, out)) == 0

    assert _temporaries(out) == []
    assert [p.name for p in (out / "results").glob(".*")] == [f".{truncated.name}.corrupt"]
    pq.read_metadata(victim)
    pq.read_metadata(truncated)
    pd.testing.assert_frame_equal(_rows(out), _rows(reference), check_exact=True)


def test_changed_plan_in_same_folder_is_refused(
    audit_setup: AuditSetup,  # noqa: F811
    reference: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "audit"
    shutil.copytree(reference, out)
    before = sorted(p.name for p in (out / "results").iterdir())
    args = _audit_args(audit_setup, out)
    args[args.index("--shard-size") + 1] = str(SHARD_SIZE + 1)  # another set of shards: refused
    code = cli_main(args)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "different plan" in err and "shard_size" in err and str(out) in err
    assert sorted(p.name for p in (out / "results").iterdir()) == before


def test_changed_measures_in_same_folder_recompute_every_shard(
    audit_setup: AuditSetup,  # noqa: F811
    reference: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "audit"
    shutil.copytree(reference, out)
    before = {p.name: p.stat().st_ino for p in (out / "results").glob("*.parquet")}
    assert cli_main(_audit_args(audit_setup, out, measures="entropy,noise")) == 0
    err = capsys.readouterr().err
    assert f"{len(before)} of {len(before)} finished shard(s) were stale and are recomputed: measures" in err
    after = {p.name: p.stat().st_ino for p in (out / "results").glob("*.parquet")}
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)
    fresh = tmp_path / "fresh"
    assert cli_main(_audit_args(audit_setup, fresh, measures="entropy,noise")) == 0
    pd.testing.assert_frame_equal(_rows(out), _rows(fresh), check_exact=True)

