"""Live experiment tracking while runs train (salience_audit.tracking.TrainingLog).

The oracle is the run folder itself: at the moment a tracker receives epoch e, ``log.csv``
must already hold exactly e rows and ``run.json`` must still say ``finished: false`` (for all but
the run's end); the values sent must equal that epoch's ``log.csv`` row.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from tiny_data import tiny_dataset

from salience_audit.data.manifest import read_manifest
from salience_audit.tracking import TrainingLog
from salience_audit.training.config import TrainConfig
from salience_audit.training.runs import train_group


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "log.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _finished(run_dir: Path) -> bool:
    return bool(json.loads((run_dir / "run.json").read_text()).get("finished"))


class RecordingTracker:
    """A tracker that records, for every call, what the run folder held at that moment."""

    kind = "recording"

    def __init__(self, runs_root: Path, fail_metrics: bool = False) -> None:
        self.runs_root = runs_root
        self.fail_metrics = fail_metrics
        self.events: list[dict[str, Any]] = []

    def start_run(self, name: str, group: str, tags: dict[str, str]) -> RecordingRun:
        self.events.append({"call": "start", "run": name, "group": group, "tags": dict(tags)})
        return RecordingRun(self, name)


class RecordingRun:
    def __init__(self, tracker: RecordingTracker, name: str) -> None:
        self.tracker = tracker
        self.name = name
        self.run_dir = tracker.runs_root / name

    def _record(self, call: str, **extra: Any) -> None:
        self.tracker.events.append({"call": call, "run": self.name, "log_rows": len(_log_rows(self.run_dir)),
                                    "finished": _finished(self.run_dir), **extra})

    def log_params(self, params: dict[str, Any]) -> None:
        self._record("params", params=dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.tracker.fail_metrics:
            raise ConnectionError("tracking server unreachable")
        self._record("metrics", metrics=dict(metrics), step=step)

    def log_artifacts(self, folder: Path, name: str) -> None:
        self._record("artifacts", folder=str(folder))

    def close(self) -> None:
        self.tracker.events.append({"call": "close", "run": self.name})


def _train(tmp_path: Path, tracking: TrainingLog, epochs: int = 3) -> list[Path]:
    manifest = read_manifest(tiny_dataset(tmp_path / "data", n=9, seed=0))
    train = [s for s in manifest if s.split == "train"]
    val = [s for s in manifest if s.split == "test"]
    config = TrainConfig(arch="small_cnn", loss="xent", weights=None, epochs=epochs, batch_size=8, device="cpu")
    try:
        return train_group(config, 2, tmp_path / "runs", train_samples=train, val_samples=val, progress=False,
                           on_epoch=tracking.epoch, on_run_done=tracking.run_done)
    finally:
        tracking.close()


def test_each_epoch_reaches_the_tracker_when_it_ends_not_after_the_run(tmp_path):
    tracker = RecordingTracker(tmp_path / "runs")
    dirs = _train(tmp_path, TrainingLog([tracker]), epochs=3)
    assert [d.name for d in dirs] == ["small_cnn-xent-seed0", "small_cnn-xent-seed1"]
    for run_dir in dirs:
        events = [e for e in tracker.events if e["run"] == run_dir.name]
        assert [e["call"] for e in events] == ["start", "params", "metrics", "metrics", "metrics", "metrics",
                                               "artifacts", "close"]
        assert events[1]["params"]["loss"] == "xent" and events[0]["tags"]["seed"] == str(events[1]["params"]["seed"])
        log = _log_rows(run_dir)
        epochs = [e for e in events if e["call"] == "metrics" and "val_acc" in e["metrics"]]
        assert [e["step"] for e in epochs] == [1, 2, 3]
        for e, row in zip(epochs, log):
            # Sent while the run trained: log.csv held exactly this epoch, the run was not finished.
            assert e["log_rows"] == e["step"] and e["finished"] is False
            assert e["metrics"] == {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
        best = next(e for e in events if e["call"] == "metrics" and "best_val_acc" in e["metrics"])
        info = json.loads((run_dir / "run.json").read_text())
        assert best["finished"] is True and best["step"] == 3
        assert best["metrics"] == {"best_val_acc": info["best_val_acc"], "best_epoch": info["best_epoch"]}
        assert events[-2]["finished"] is True  # the folder goes to the tracker once it is final
    # The second run's tracker run opens only after the first one is closed.
    calls = [(e["call"], e["run"]) for e in tracker.events]
    assert calls.index(("close", dirs[0].name)) < calls.index(("start", dirs[1].name))


def test_runs_found_finished_are_logged_whole(tmp_path):
    _train(tmp_path, TrainingLog([]), epochs=2)
    tracker = RecordingTracker(tmp_path / "runs")
    _train(tmp_path, TrainingLog([tracker]), epochs=2)  # nothing trains: both runs are skipped
    for name in ("small_cnn-xent-seed0", "small_cnn-xent-seed1"):
        metrics = [e for e in tracker.events if e["run"] == name and e["call"] == "metrics"]
        assert [e["step"] for e in metrics] == [1, 2, 2]  # two epochs, then best epoch / accuracy
        assert all(e["finished"] for e in metrics)


def test_a_failing_tracker_warns_once_per_run_and_training_goes_on(tmp_path):
    tracker = RecordingTracker(tmp_path / "runs", fail_metrics=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dirs = _train(tmp_path, TrainingLog([tracker]), epochs=2)
    messages = [str(w.message) for w in caught if "experiment tracking stopped" in str(w.message)]
    assert len(messages) == 2 and "tracking server unreachable" in messages[0]
    assert all(_finished(d) and len(_log_rows(d)) == 2 for d in dirs)
    closes = [e["run"] for e in tracker.events if e["call"] == "close"]
    assert closes == [d.name for d in dirs]  # each tracker run closed once, none left open


def test_wandb_offline_runs_hold_each_epoch_and_the_audit_means(tmp_path, monkeypatch):
    """``--log-to wandb`` in offline mode, read back from wandb's own transaction log (tests/wandb_records.py)."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    from wandb_records import read_offline_run

    from salience_audit.cli import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    manifest = tiny_dataset(tmp_path / "data", n=9, seed=0)
    assert main(["train", "--train-manifest", str(manifest), "--arch", "small_cnn", "--weights", "none",
                 "--loss", "xent", "--epochs", "2", "--seeds", "1", "--batch-size", "8", "--device", "cpu",
                 "--out", str(tmp_path / "runs"), "--quiet", "--log-to", "wandb:sa-test"]) == 0
    assert main(["audit", "--group", f"a={tmp_path / 'runs'}/*seed0", "--manifest", f"tiny={manifest}",
                 "--measures", "entropy", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "audit"),
                 "--quiet", "--log-to", "wandb:sa-test"]) == 0
    runs = [read_offline_run(f) for f in sorted((tmp_path / "wandb").glob("offline-run-*"))]
    by_group = {}
    for run in runs:
        by_group.setdefault(run["group"], []).append(run)
    assert sorted(by_group) == ["a", "audit", "small_cnn-xent"]

    (train,) = by_group["small_cnn-xent"]
    log = _log_rows(tmp_path / "runs" / "small_cnn-xent-seed0")
    epochs = [h for h in train["history"] if "val_acc" in h]
    assert [h["_step"] for h in epochs] == [1, 2]
    assert [h["val_acc"] for h in epochs] == [float(r["val_acc"]) for r in log]
    assert [h["loss"] for h in epochs] == [float(r["loss"]) for r in log]
    assert train["config"]["loss"] == "xent" and "loss=xent" in train["tags"]

    (audited,) = by_group["a"]
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    expected = next(r["mean"] for r in summary["per_run"] if r["measure"] == "entropy" and r["dataset"] == "tiny"
                    and r["run"] == "small_cnn-xent-seed0")
    (means,) = [h for h in audited["history"] if "entropy/tiny" in h]
    assert means["entropy/tiny"] == pytest.approx(expected, rel=1e-12)
    # The audit folder's path is longer than a W&B tag may be: it is kept whole in the config.
    assert audited["config"]["audit"] == str((tmp_path / "audit").resolve())
