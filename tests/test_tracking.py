"""--log-to: train 2 tiny runs and audit them with MLflow's file store and TensorBoard, then read
everything back through MLflow's own client and TensorBoard's own EventAccumulator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from tiny_data import tiny_dataset

from salience_audit.cli import main
from salience_audit.errors import EXIT_MISSING_EXTRA, EXIT_USAGE

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    manifest = tiny_dataset(root / "data", n=12, seed=0)
    mlruns = (root / "mlruns").as_uri()
    tb = root / "tb"
    trackers = ["--log-to", f"mlflow:{mlruns}", "--log-to", f"tensorboard:{tb}"]
    code = main(["train", "--train-manifest", str(manifest), "--arch", "small_cnn", "--weights", "none",
                 "--loss", "xent", "--epochs", "2", "--seeds", "2", "--batch-size", "8", "--device", "cpu",
                 "--out", str(root / "runs"), "--quiet", *trackers])
    assert code == 0
    code = main(["audit", "--group", f"a={root / 'runs'}/*seed0", "--group", f"b={root / 'runs'}/*seed1",
                 "--manifest", f"tiny={manifest}", "--measures", "entropy", "--batch-size", "8", "--device", "cpu",
                 "--out", str(root / "audit"), "--quiet", *trackers])
    assert code == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlruns)
    experiment = client.get_experiment_by_name("salience-audit")
    runs = client.search_runs([experiment.experiment_id])
    return root, client, runs, tb


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "log.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_training_epochs_config_and_run_folder_reach_mlflow(tracked):
    root, client, runs, _ = tracked
    train = {r.info.run_name: r for r in runs if r.data.tags.get("kind") == "train"}
    assert sorted(train) == ["small_cnn-xent-seed0", "small_cnn-xent-seed1"]
    for name, run in train.items():
        log = _log_rows(root / "runs" / name)
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), float(r["val_acc"])) for r in log]
        assert run.data.params["loss"] == "xent" and run.data.params["epochs"] == "2"
        assert run.data.tags["group"] == "small_cnn-xent"
        files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "run")}
        assert {"model.pt", "run.json", "log.csv"} <= files


def test_audit_means_comparisons_and_report_reach_mlflow(tracked):
    root, client, runs, _ = tracked
    audit = {r.info.run_name: r for r in runs if r.data.tags.get("kind") == "audit"}
    assert {r.data.tags["group"] for r in audit.values()} == {"a", "b"}
    rows = pd.concat(pd.read_parquet(p) for p in sorted((root / "audit" / "results").glob("*.parquet")))
    for name, run in audit.items():
        # Oracle: the mean of the run's own entropy rows, straight from the result files.
        expected = rows[(rows["run"] == name) & (rows["measure"] == "entropy")]["value"].mean()
        assert run.data.metrics["entropy/tiny"] == pytest.approx(expected, rel=1e-9)
    (whole,) = [r for r in runs if r.data.tags.get("kind") == "audit-comparisons"]
    summary = json.loads((root / "audit" / "summary.json").read_text())
    cmp = next(c for c in summary["comparisons"] if c["measure"] == "entropy" and c["dataset"] == "tiny")
    assert whole.data.metrics["compare/entropy/tiny/a vs b/mean_diff"] == pytest.approx(cmp["mean_diff"])
    assert "index.html" in {Path(a.path).name for a in client.list_artifacts(whole.info.run_id, "report")}


def test_tensorboard_event_files_read_back(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, client, runs, tb = tracked
    train = EventAccumulator(str(tb / "train" / "small_cnn-xent" / "small_cnn-xent-seed1"))
    train.Reload()
    log = _log_rows(root / "runs" / "small_cnn-xent-seed1")
    events = train.Scalars("loss")  # float32 in the event file
    assert [e.step for e in events] == [int(r["epoch"]) for r in log]
    assert [e.value for e in events] == pytest.approx([float(r["loss"]) for r in log], rel=1e-6)
    audit = EventAccumulator(str(tb / "audit" / "b" / "small_cnn-xent-seed1"))
    audit.Reload()
    mlflow_value = next(r for r in runs if r.data.tags.get("kind") == "audit"
                        and r.info.run_name == "small_cnn-xent-seed1").data.metrics["entropy/tiny"]
    assert audit.Scalars("entropy/tiny")[0].value == pytest.approx(mlflow_value, rel=1e-6)


def test_unknown_tracker_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--train-manifest", "x.csv", "--log-to", "comet"]) == EXIT_USAGE
    assert "unknown tracker 'comet'" in capsys.readouterr().err


def test_missing_tracker_extra_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    code = main(["train", "--train-manifest", str(tmp_path / "none.csv"), "--log-to", "wandb",
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == EXIT_MISSING_EXTRA
    assert err.strip() == ("salience-audit: error: --log-to wandb needs the optional package 'wandb': "
                           'pip install "salience-audit[wandb]"')
    assert not (tmp_path / "runs").exists()
