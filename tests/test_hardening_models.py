"""Bad models and checkpoints, untrusted pickles, non-finite logits, degenerate maps, lonely runs.

Everything goes through the command line (``salience_audit.cli.main``); run folders are
written by hand (``model.pt`` + ``run.json``) so each case is exactly the fault it names.
"""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hardening_fixtures import FAST, MLP, NaNOnBright, audit, flat_image, make_run, rejected, rgb_image, rows, runs, write_csv
from salience_audit.cli import main
from salience_audit.models.small_cnn import SmallCNN
from salience_audit.errors import EXIT_BAD_INPUT


@pytest.fixture()
def data(tmp_path) -> Path:
    """Six flat images, two of them bright (lines 4 and 6), as a header manifest."""
    for k in range(6):
        flat_image(tmp_path / "data" / f"i{k}.png", 240 if k in (2, 4) else 20 + 10 * k)
    return write_csv(tmp_path / "data" / "m.csv", [("test", "Real" if k % 2 else "Synthetic", f"i{k}.png") for k in range(6)])


def _edit_meta(run: Path, **changes: object) -> Path:
    meta = json.loads((run / "run.json").read_text())
    meta.update(changes)
    (run / "run.json").write_text(json.dumps(meta))
    return run


def _audit(capsys, pattern, manifest, out, *extra):
    return audit(capsys, "--group", f"g={pattern}", "--manifest", str(manifest), "--out", str(out), *FAST, *extra)


# ----------------------------------------------------------------------------- layers and checkpoints


def test_target_layer_that_does_not_exist(tmp_path, capsys, data):
    run = _edit_meta(make_run(tmp_path / "r-0"), cam_layer="feature")
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {run / 'run.json'}: r-0: no layer named 'feature' in SmallCNN" in err
    assert "closest names: features" in err


def test_target_layer_without_spatial_output(tmp_path, capsys, data):
    _edit_meta(make_run(tmp_path / "r-0"), cam_layer="pool")
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert "r-0: layer 'pool' gives (" in err and "not a spatial map [B, K, h, w]" in err


def test_model_without_a_convolutional_layer(tmp_path, capsys, data):
    run = make_run(tmp_path / "r-0", module=MLP())
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out", "--trust-pickle")
    assert code == EXIT_BAD_INPUT
    assert f"{run / 'model.pt'}: the pickled model (MLP) has no convolutional layer for CAM" in err


def test_checkpoint_of_another_architecture(tmp_path, capsys, data):
    run = _edit_meta(make_run(tmp_path / "r-0"), arch="resnet18", input_size=224, cam_layer="layer4",
                     classifier_layer="fc")
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert f"{run / 'model.pt'}: checkpoint does not fit resnet18 with num_classes=2" in err
    assert "the checkpoint seems to be for architecture 'small_cnn' with num_classes=2" in err


def test_checkpoint_with_another_class_count(tmp_path, capsys, data):
    run = _edit_meta(make_run(tmp_path / "r-0"), num_classes=3)
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert f"{run / 'model.pt'}: checkpoint does not fit small_cnn with num_classes=3" in err
    assert "checkpoint (2, 64) vs model (3, 64)" in err or "checkpoint (2,) vs model (3,)" in err


def test_corrupt_checkpoint_and_broken_run_json(tmp_path, capsys, data):
    run = make_run(tmp_path / "r-0")
    (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:500])
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT and f"{run / 'model.pt'}: cannot read a PyTorch checkpoint" in err
    (run / "run.json").write_text("{not json")
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT and f"{run / 'run.json'}: cannot read run.json" in err


def test_checkpoint_with_nan_weights_is_refused(tmp_path, capsys, data):
    run = make_run(tmp_path / "r-0")
    state = torch.load(run / "model.pt", weights_only=True)
    state["classifier.weight"][0, 0] = float("nan")
    torch.save(state, run / "model.pt")
    for mode in ("stop", "skip"):
        code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / mode, "--on-bad-image", mode)
        assert code == EXIT_BAD_INPUT
        assert f"{run / 'model.pt'}: checkpoint holds non-finite values (NaN or infinity) in 1 tensor(s)" in err
        assert "classifier.weight" in err


# ----------------------------------------------------------------------------- untrusted pickles


class _Payload:
    """Unpickling this creates a file: it stands for arbitrary code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_code_is_never_run_without_trust(tmp_path, capsys, data):
    marker = tmp_path / "pwned"
    run = make_run(tmp_path / "r-0", module=_Payload(marker))
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert f"{run / 'model.pt'}: the file holds a pickled Python object" in err
    assert "Pass --trust-pickle" in err
    code = main(["score", "--runs", str(tmp_path / "r-*"), "--manifest", str(data), "--out", str(tmp_path / "s"),
                 "--device", "cpu", "--no-progress"])
    assert code == EXIT_BAD_INPUT and "--trust-pickle" in capsys.readouterr().err
    assert not marker.exists()


def test_pickled_whole_model_needs_the_trust_flag(tmp_path, capsys, data):
    torch.manual_seed(0)
    make_run(tmp_path / "r-0", module=SmallCNN())
    make_run(tmp_path / "r-1", seed=1)
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "refused")
    assert code == EXIT_BAD_INPUT and "refused" in err
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out", "--trust-pickle")
    assert code == 0, err
    assert set(rows(tmp_path / "out")["run"]) == {"r-0", "r-1"}
    code = main(["score", "--runs", str(tmp_path / "r-*"), "--manifest", str(data), "--out", str(tmp_path / "s"),
                 "--device", "cpu", "--no-progress", "--trust-pickle"])
    assert code == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "s" / "scores.csv")) == 12


def test_trust_flag_is_not_read_from_a_config_file(tmp_path, capsys, data):
    make_run(tmp_path / "r-0", module=SmallCNN())
    config = tmp_path / "audit.yaml"
    config.write_text("trust_pickle: true\n")
    code, _, err = audit(capsys, "--config", str(config), "--group", f"g={tmp_path / 'r-*'}",
                         "--manifest", str(data), "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"{config}: trust_pickle: allowed on the command line only (--trust-pickle), not in a config file" in err


def test_yaml_config_with_a_python_object_tag_is_refused(tmp_path, capsys, data):
    marker = tmp_path / "pwned"
    config = tmp_path / "audit.yaml"
    config.write_text(f"batch_size: 4\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    runs(tmp_path / "runs", 1)
    code, _, err = audit(capsys, "--config", str(config), "--group", f"g={tmp_path / 'runs' / 'run-*'}",
                         "--manifest", str(data), "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT
    assert f"salience-audit: error: {config}:2: refused: could not determine a constructor for the tag" in err
    assert "python/object/apply:os.system" in err and "yaml.safe_load" in err
    assert not marker.exists()


# ----------------------------------------------------------------------------- non-finite logits


def test_nan_logits_stop_the_audit_naming_the_run_and_image(tmp_path, capsys, data):
    make_run(tmp_path / "r-0", module=NaNOnBright())
    make_run(tmp_path / "r-1", seed=1)
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out", "--trust-pickle")
    assert code == EXIT_BAD_INPUT
    assert "run 'r-0' (group 'g', dataset 'm') gives non-finite logits (NaN or infinity) on" in err
    assert f"i2.png ({data}:4)" in err and "--on-bad-image skip" in err


def test_nan_logits_skipped_images_are_listed_and_other_rows_are_clean(tmp_path, capsys, data):
    make_run(tmp_path / "r-0", module=NaNOnBright())
    make_run(tmp_path / "r-1", seed=1)
    out = tmp_path / "out"
    code, stdout, err = audit(capsys, "--group", f"g={tmp_path / 'r-*'}", "--manifest", str(data), "--out", str(out),
                              "--device", "cpu", "--quiet", "--no-report", "--batch-size", "4", "--trust-pickle",
                              "--measures", "entropy,noise,stability,deletion", "--on-bad-image", "skip")
    assert code == 0, err
    assert "rejected: 2 images," in stdout
    rej = rejected(out)
    assert rej[["path", "line"]].values.tolist() == [["i2.png", 4], ["i4.png", 6]]
    assert rej["reason"].str.startswith("non-finite logits (NaN or infinity) from run 'r-0' of group 'g'").all()
    df = rows(out)
    assert sorted(df["path"].unique()) == ["i0.png", "i1.png", "i3.png", "i5.png"]
    assert np.isfinite(df["value"]).all()


def test_infinite_logits_on_every_image_always_stop(tmp_path, capsys, data):
    make_run(tmp_path / "r-0", module=NaNOnBright(level=-10.0, value=float("inf")))
    code, _, err = _audit(capsys, tmp_path / "r-*", data, tmp_path / "out", "--trust-pickle", "--on-bad-image", "skip")
    assert code == EXIT_BAD_INPUT
    assert "run 'r-0' (group 'g', dataset 'm') gives non-finite logits (NaN or infinity) on every image" in err
    assert "the checkpoint is broken" in err


# ----------------------------------------------------------------------------- degenerate maps


def test_constant_and_all_zero_maps_give_defined_values(tmp_path, capsys, data):
    """A model whose convolutions are all zero gives constant (all-zero) maps for every image."""
    for k in range(2):
        run = make_run(tmp_path / f"r-{k}", seed=k)
        state = torch.load(run / "model.pt", weights_only=True)
        for key, value in state.items():
            if value.dim() == 4:
                value.zero_()
        torch.save(state, run / "model.pt")
    maps = tmp_path / "maps"
    maps.mkdir()
    for k in range(6):  # constant human maps too
        flat_image(maps / f"i{k}.png", 0 if k % 2 else 200)
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"g={tmp_path / 'r-*'}", "--manifest", str(data), "--out", str(out),
                         "--human-maps", str(maps), "--device", "cpu", "--quiet", "--no-report",
                         "--measures", "all", "--deletion-steps", "2", "--batch-size", "6")
    assert code == 0, err
    df = rows(out)
    assert np.isfinite(df["value"]).all(), df[~np.isfinite(df["value"])]["measure"].unique()
    ent = df[df["measure"].isin(["entropy", "entropy_norm", "spatial_entropy"])]["value"]
    assert (ent == 0).all()
    assert (df[df["measure"] == "stability_ssim"]["value"] == 1).all()


# ----------------------------------------------------------------------------- stability with one run


def test_stability_with_a_single_run_is_an_error(tmp_path, capsys, data):
    pattern = runs(tmp_path / "runs", 1)
    code, _, err = audit(capsys, "--group", f"g={pattern}", "--manifest", str(data), "--out", str(tmp_path / "out"),
                         "--device", "cpu", "--quiet", "--no-report", "--measures", "entropy,stability")
    assert code == EXIT_BAD_INPUT
    assert "stability needs at least two runs per group; group(s) ['g'] have one" in err


def test_stability_skipped_with_a_warning_for_a_lonely_group(tmp_path, capsys, data):
    one = runs(tmp_path / "one", 1, prefix="solo")
    two = runs(tmp_path / "two", 2, prefix="pair")
    out = tmp_path / "out"
    code, _, err = audit(capsys, "--group", f"a={one}", "--group", f"b={two}", "--manifest", str(data),
                         "--out", str(out), "--device", "cpu", "--quiet", "--no-report",
                         "--measures", "entropy,stability")
    assert code == 0, err
    assert ("salience-audit: warning: stability needs at least two runs per group; group(s) ['a'] have one run, "
            "so their stability is skipped") in err
    df = rows(out)
    stab = df[df["measure"] == "stability_ssim"]
    assert set(stab["group"]) == {"b"} and len(stab) == 6
    assert set(df[df["group"] == "a"]["measure"]) >= {"entropy", "score"}


def test_run_names_must_be_unique(tmp_path, capsys, data):
    runs(tmp_path / "x", 1)
    runs(tmp_path / "y", 1)
    code, _, err = audit(capsys, "--group", f"a={tmp_path / 'x' / 'run-*'}", "--group", f"b={tmp_path / 'y' / 'run-*'}",
                         "--manifest", str(data), "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT and "run name 'run-0' appears in groups 'a' and 'b'" in err


def test_group_pattern_matching_nothing(tmp_path, capsys, data):
    rgb_image(tmp_path / "x.png")
    code, _, err = audit(capsys, "--group", f"g={tmp_path / 'nothing-*'}", "--manifest", str(data),
                         "--out", str(tmp_path / "out"), *FAST)
    assert code == EXIT_BAD_INPUT and "group 'g': no run folder (with run.json) matches" in err
