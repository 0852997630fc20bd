"""One CLI grammar: the same flags on every command, old spellings as aliases, --config everywhere,
documented exit codes, and progress bars only on terminals and without --quiet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_data import TRAIN_TINY, tiny_dataset

from salience_audit.cli import build_parser, main, parse_command_line
from salience_audit.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE

COMMANDS = ("train", "score", "audit", "report", "demo")
MINIMAL = {  # the least each command needs to parse
    "train": ["--train-manifest", "m.csv"],
    "score": ["--runs", "r", "--manifest", "m.csv"],
    "audit": [],
    "report": ["a"],
    "demo": [],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_out_config_quiet_and_the_old_spelling(command, tmp_path):
    options = {o for a in build_parser().command_parsers[command]._actions for o in a.option_strings}
    assert {"--out", "--config", "--quiet", "-q", "--no-progress", "--seed"} <= options
    if command != "report":  # the report computes nothing on a device
        assert "--device" in options
    for spelling in ("--quiet", "-q", "--no-progress"):
        assert parse_command_line([command, *MINIMAL[command], spelling]).quiet is True
    assert parse_command_line([command, *MINIMAL[command]]).quiet is False
    args = parse_command_line([command, *MINIMAL[command], "--out", str(tmp_path), "--seed", "7"])
    assert args.out == str(tmp_path) and args.seed == 7


def test_out_has_a_default_for_every_command_that_creates_a_folder():
    defaults = {c: parse_command_line([c, *MINIMAL[c]]).out for c in COMMANDS}
    assert defaults == {"train": "runs", "score": "scores", "audit": None, "report": None, "demo": "demo-output"}
    # audit: None means "the config file's 'out', else audit-output" (resolved with its settings)


def test_config_file_fills_flags_and_required_ones_and_flags_win(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("train-manifest: data.csv\nepochs: 5\nbatch_size: 3\nseeds: '0,4'\nquiet: true\n")
    args = parse_command_line(["train", "--config", str(config), "--epochs", "2"])
    assert (args.train_manifest, args.epochs, args.batch_size, args.seeds, args.quiet) == ("data.csv", 2, 3, [0, 4], True)
    toml = tmp_path / "score.toml"
    toml.write_text('runs = "runs/*"\nmanifest = ["a.csv", "b.csv"]\nthreshold = 0.7\n')
    args = parse_command_line(["score", "--config", str(toml)])
    assert (args.runs, args.manifest, args.threshold) == ("runs/*", ["a.csv", "b.csv"], 0.7)
    report = tmp_path / "report.yaml"
    report.write_text(f"audit_dir: {tmp_path / 'audit'}\nseed: 3\n")
    args = parse_command_line(["report", "--config", str(report)])
    assert (args.audit_dir, args.seed) == (str(tmp_path / "audit"), 3)


def test_config_file_errors_name_the_file_and_exit_1(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochz: 5\n")
    assert main(["train", "--config", str(config)]) == EXIT_BAD_INPUT
    assert f"{config}: unknown setting 'epochz' for 'salience-audit train'" in capsys.readouterr().err
    config.write_text("train-manifest: m.csv\nloss: hinge\n")
    assert main(["train", "--config", str(config)]) == EXIT_BAD_INPUT
    assert "setting 'loss': 'hinge' is not one of ['xent', 'cyborg']" in capsys.readouterr().err
    config.write_text("train-manifest: m.csv\ntrust-pickle: true\n")  # never from a file
    assert main(["score", "--config", str(config)]) == EXIT_BAD_INPUT
    assert main(["demo", "--config", str(tmp_path / "missing.yaml")]) == EXIT_BAD_INPUT


def test_exit_codes_usage_is_2_bad_input_is_1(tmp_path, capsys):
    assert main(["train", "--train-manifest", "m.csv", "--no-such-flag"]) == EXIT_USAGE
    assert main(["train"]) == EXIT_USAGE  # a required flag missing
    assert main(["train", "--train-manifest", "m.csv", "--epochs", "many"]) == EXIT_USAGE
    assert main(["train", "--train-manifest", "m.csv", "--seeds", "0,3", "--seed", "5"]) == EXIT_USAGE
    assert main(["report"]) == EXIT_USAGE
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == EXIT_USAGE
    capsys.readouterr()
    assert main(["train", "--train-manifest", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")]) \
        == EXIT_BAD_INPUT
    assert f"{tmp_path / 'nope.csv'}" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == EXIT_BAD_INPUT  # not an audit folder


def test_exit_codes_from_the_installed_command(tmp_path):
    """The console command returns the same statuses, with one error line and no traceback."""
    run = [sys.executable, "-m", "salience_audit.cli"]
    proc = subprocess.run([*run, "score", "--runs", "x", "--manifest", "m.csv", "--bogus"], capture_output=True,
                          text=True)
    assert proc.returncode == EXIT_USAGE and "unrecognized arguments: --bogus" in proc.stderr
    proc = subprocess.run([*run, "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip() == f"salience-audit: error: {tmp_path}: not an audit folder (no audit.json inside)"


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("grammar")
    manifest = tiny_dataset(root / "data")
    assert main(["train", "--train-manifest", str(manifest), *TRAIN_TINY, "--seeds", "2", "--seed", "3",
                 "--out", str(root / "runs"), "--quiet"]) == EXIT_OK
    return root, manifest


def test_train_seed_is_the_first_seed(tiny_runs):
    root, _ = tiny_runs
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["small_cnn-xent-seed3", "small_cnn-xent-seed4"]
    assert json.loads((root / "runs" / "small_cnn-xent-seed4" / "run.json").read_text())["config"]["seed"] == 4


def _bar_lines(err: str) -> bool:
    return "batch" in err and "%" in err


def test_progress_bars_only_on_a_terminal_and_not_with_quiet(tiny_runs, tmp_path, capsys, monkeypatch):
    root, manifest = tiny_runs
    flags = ["score", "--runs", str(root / "runs"), "--manifest", str(manifest), "--device", "cpu"]
    assert main([*flags, "--out", str(tmp_path / "a")]) == EXIT_OK
    assert not _bar_lines(capsys.readouterr().err)  # stderr is not a terminal under pytest: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*flags, "--out", str(tmp_path / "b")]) == EXIT_OK
    assert _bar_lines(capsys.readouterr().err)
    assert main([*flags, "--out", str(tmp_path / "c"), "--no-progress"]) == EXIT_OK
    assert not _bar_lines(capsys.readouterr().err)


def test_report_takes_its_folder_as_argument_or_out_and_a_seed(tiny_runs, tmp_path, capsys):
    root, manifest = tiny_runs
    out = tmp_path / "audit"
    assert main(["audit", "--group", f"g={root / 'runs'}/*", "--manifest", str(manifest), "--measures", "entropy",
                 "--device", "cpu", "--out", str(out), "--quiet", "--no-report"]) == EXIT_OK
    assert main(["report", "--out", str(out), "--seed", "11", "-q"]) == EXIT_OK
    assert json.loads((out / "summary.json").read_text())["method"]["seed"] == 11
    assert main(["report", str(out)]) == EXIT_OK
    assert json.loads((out / "summary.json").read_text())["method"]["seed"] == 0


def test_summary_and_report_draw_a_bar_unless_quiet(tiny_runs, tmp_path, capsys, monkeypatch):
    root, manifest = tiny_runs
    out = tmp_path / "audit"
    assert main(["audit", "--group", f"g={root / 'runs'}/*", "--manifest", str(manifest), "--measures", "entropy",
                 "--device", "cpu", "--out", str(out), "--quiet", "--no-report"]) == EXIT_OK
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["report", str(out), "--quiet"]) == EXIT_OK
    assert "reading results" not in capsys.readouterr().err
    assert main(["report", str(out)]) == EXIT_OK
    assert "reading results" in capsys.readouterr().err
