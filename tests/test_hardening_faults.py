"""Write faults (full disk, unwritable output) and untrusted report content, through the CLI.

A failed write must give a clear error and leave no half-written result file that a
resumed audit would trust; the resumed audit must then equal an uninterrupted one.
Tests run as root in CI, where ``chmod`` does not block writes: unwritable folders are
made by putting the output folder under a regular file, and a full disk by making the
writes fail with ``ENOSPC``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hardening_fixtures import FAST, audit, dataset, rgb_image, rows, runs, write_csv
from salience_audit.errors import EXIT_BAD_INPUT, EXIT_WRITE_FAILED


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    manifest, _ = dataset(root / "data", n=6)
    return runs(root / "runs", 2), manifest


def _args(setup, out: Path) -> list[str]:
    pattern, manifest = setup
    return ["--group", f"g={pattern}", "--manifest", f"d={manifest}", "--out", str(out), *FAST,
            "--shard-size", "2", "--measures", "entropy,stability"]


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


def _final_name(tmp: object) -> str:
    """``<shard>.parquet`` from the temporary name ``.<shard>.parquet.<random>.tmp``."""
    name = Path(str(tmp)).name
    return name[1 : name.index(".parquet") + len(".parquet")]


def _no_temporary_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_output_folder_under_a_regular_file(tmp_path, capsys, setup):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    code, _, err = audit(capsys, *_args(setup, blocker / "out"))
    assert code == EXIT_BAD_INPUT  # --out under a regular file: a bad path
    assert f"salience-audit: error: {blocker / 'out'}: cannot create the output folder: Not a directory" in err


def test_disk_full_while_writing_a_shard_then_resume(tmp_path, capsys, monkeypatch, setup):
    clean = tmp_path / "clean"
    assert audit(capsys, *_args(setup, clean))[0] == 0

    out = tmp_path / "out"
    real_write = pq.write_table
    calls = []

    def write_half_then_fail(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 2:  # the second shard: half a file, then the disk is full
            real_write(table, where, *args, **kwargs)
            Path(where).write_bytes(Path(where).read_bytes()[:100])
            raise _enospc()
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    code, _, err = audit(capsys, *_args(setup, out))
    assert code == EXIT_WRITE_FAILED
    written, shard = _final_name(calls[0]), _final_name(calls[1])
    assert f"salience-audit: error: {out / 'results' / shard}: cannot write result file: No space left on device" in err
    assert [p.name for p in (out / "results").glob("*.parquet")] == [written]
    assert not (out / "results" / shard).exists()
    assert _no_temporary_files(out)
    assert not (out / "audit.json").exists()

    monkeypatch.setattr(pq, "write_table", real_write)
    code, _, err = audit(capsys, *_args(setup, out))
    assert code == 0, err
    assert len(list((out / "results").glob("*.parquet"))) == 3
    assert rows(out).equals(rows(clean))


def test_disk_full_at_the_rename_leaves_no_result(tmp_path, capsys, monkeypatch, setup):
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".parquet"):
            raise _enospc(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = audit(capsys, *_args(setup, out))
    assert code == EXIT_WRITE_FAILED
    assert "cannot write result file: No space left on device" in err
    assert not list((out / "results").glob("*.parquet"))
    assert _no_temporary_files(out)


@pytest.mark.parametrize("name", ["audit.json", "rejected.csv", "mean_maps.npz"])
def test_disk_full_while_finishing(tmp_path, capsys, monkeypatch, setup, name):
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise _enospc(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = audit(capsys, *_args(setup, out))
    assert code == EXIT_WRITE_FAILED
    assert f"{out / name}: cannot write result file: No space left on device" in err
    assert not (out / name).exists() and _no_temporary_files(out)
    monkeypatch.setattr(os, "replace", real_replace)
    code, _, err = audit(capsys, *_args(setup, out))  # resumes: every shard is done, only the end is redone
    assert code == 0, err
    assert (out / name).exists()


def test_disk_full_while_writing_the_report(tmp_path, capsys, monkeypatch, setup):
    out = tmp_path / "out"
    real_write_text = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == "index.html":
            raise _enospc(self)
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    args = [a for a in _args(setup, out) if a != "--no-report"]
    code, _, err = audit(capsys, *args)
    assert code == EXIT_WRITE_FAILED
    assert f"{out / 'report' / 'index.html'}: cannot write the summary or report: No space left on device" in err
    assert f"run 'salience-audit report {out}'" in err
    assert len(list((out / "results").glob("*.parquet"))) == 3  # the results are complete


def test_report_content_is_escaped(tmp_path, capsys, setup):
    pattern, _ = setup
    data = tmp_path / "data"
    rgb_image(data / "<script>.png", seed=1)
    rgb_image(data / "a&b\".png", seed=2)
    manifest = write_csv(data / "m.csv", [("test", "Real", "<script>.png"), ("test", "Synthetic", 'a&b".png')])
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"<b>g</b>={pattern}", "--manifest", f"<i>ds</i>={manifest}",
                         "--out", str(out), "--device", "cpu", "--quiet", "--measures", "entropy")
    assert code == 0, err
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<b>g" not in html and "<i>ds" not in html
    assert "&lt;script&gt;.png" in html  # the gallery names the image, escaped
    assert "&lt;b&gt;g&lt;/b&gt;" in html and "&lt;i&gt;ds&lt;/i&gt;" in html
