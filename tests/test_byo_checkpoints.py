"""Checkpoints as users have them: CYBORG-style files audited by glob, equal to run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from byo_fixtures import audit, cyborg_style_checkpoint, image_tree, rows, run_folder

from salience_audit.errors import InputError
from salience_audit.models.checkpoint import ModelRecipe, checkpoint_run_names, load_checkpoint
from salience_audit.models.registry import load_state_dict_file

SIZE = 96  # DenseNet-121 / ResNet-50 give 3x3 maps at 96 px: cheap on a CPU
FAST = ["--device", "cpu", "--measures", "entropy", "--batch-size", "4"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ten checkpoints written like the CYBORG training code (8 DenseNet-121, 2 ResNet-50) + run folders."""
    root = tmp_path_factory.mktemp("byo-ckpt")
    for k in range(10):
        arch, family = ("densenet121", "cyborg") if k < 8 else ("resnet50", "xent")
        name = f"{arch}_{family}_{k}"
        net = cyborg_style_checkpoint(arch, root / "weights" / name / "Logs" / "final_model.pth", seed=k)
        run_folder(root / "runs" / family / name, net, arch, name, SIZE)
    image_tree(root / "data", ("Real", "Synthetic"), per_class=2, size=SIZE)
    return {"root": root, "data": root / "data"}


def test_ten_cyborg_checkpoints_by_glob_equal_run_folders(weights, tmp_path, capsys) -> None:
    root = weights["root"]
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({
        "groups": {
            "cyborg": {"pattern": str(root / "weights" / "densenet121_cyborg_*" / "Logs" / "final_model.pth"),
                       "arch": "densenet121"},
            "xent": {"pattern": str(root / "weights" / "resnet50_xent_*" / "Logs" / "final_model.pth"),
                     "arch": "resnet50"},
        },
        "num_classes": 2, "class_names": ["Real", "Synthetic"], "input_size": SIZE, "normalize": "imagenet",
    }), encoding="utf-8")
    code, _, err = audit(capsys, "--config", str(config), "--manifest", str(weights["data"]),
                         "--out", str(tmp_path / "glob"), *FAST)
    assert code == 0, err
    code, _, err = audit(capsys, "--group", f"cyborg={root / 'runs' / 'cyborg' / '*'}",
                         "--group", f"xent={root / 'runs' / 'xent' / '*'}", "--manifest", str(weights["data"]),
                         "--out", str(tmp_path / "folders"), "--no-report", *FAST)
    assert code == 0, err
    by_glob, by_folder = rows(tmp_path / "glob", "entropy"), rows(tmp_path / "folders", "entropy")
    names = sorted(by_glob["run"].unique())
    assert len(names) == 10 and names[0] == "densenet121_cyborg_0" and names[-1] == "resnet50_xent_9"
    assert list(by_glob["run"]) == list(by_folder["run"]) and list(by_glob["index"]) == list(by_folder["index"])
    np.testing.assert_allclose(by_glob["value"], by_folder["value"], rtol=0, atol=1e-6)
    assert by_glob["value"].nunique() > 1  # not all equal by construction
    report = (tmp_path / "glob" / "report" / "report.md").read_text(encoding="utf-8")
    assert "densenet121_cyborg_7" in report.replace("\\_", "_")  # the run name from the path, in full


def test_checkpoint_glob_without_arch_says_what_to_add(weights, tmp_path, capsys) -> None:
    pattern = str(weights["root"] / "weights" / "resnet50_xent_*" / "Logs" / "final_model.pth")
    code, _, err = audit(capsys, "--group", f"g={pattern}", "--manifest", str(weights["data"]),
                         "--out", str(tmp_path / "o"), *FAST)
    assert code == 1 and "--arch" in err and "final_model.pth" in err


def test_checkpoint_of_another_architecture_gets_a_guess(weights, tmp_path, capsys) -> None:
    pattern = str(weights["root"] / "weights" / "resnet50_xent_8" / "Logs" / "final_model.pth")
    code, _, err = audit(capsys, "--group", f"g={pattern}", "--arch", "densenet121", "--input-size", str(SIZE),
                         "--manifest", str(weights["data"]), "--out", str(tmp_path / "o"), *FAST)
    assert code == 1 and "seems to be for architecture 'resnet50'" in err and "final_model.pth" in err


def test_every_checkpoint_layout_loads_the_same_weights(tmp_path) -> None:
    from salience_audit.models.small_cnn import SmallCNN
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = SmallCNN(num_classes=2)
    state = net.state_dict()
    layouts = {
        "bare.pth": state,
        "wrapped.pth": {"state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3},
        "model_key.pt": {"model": state},
        "dataparallel.pth": {f"module.{k}": v for k, v in state.items()},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    recipe = ModelRecipe(arch="small_cnn")
    for name in [*layouts, "weights.safetensors"]:
        loaded = load_checkpoint(tmp_path / name, recipe).module.state_dict()
        assert loaded.keys() == state.keys(), name
        assert all(torch.equal(loaded[k], state[k]) for k in state), name


def test_pickled_objects_in_a_checkpoint_are_refused(tmp_path) -> None:
    from salience_audit.models.small_cnn import SmallCNN

    torch.save({"state_dict": SmallCNN().state_dict(), "args": Path("x")}, tmp_path / "ckpt.pth")
    with pytest.raises(InputError, match="weights_only=True"):
        load_state_dict_file(tmp_path / "ckpt.pth")


def test_run_names_from_paths() -> None:
    assert checkpoint_run_names(["w/densenet_cyborg_3/Logs/final_model.pth"]) == ["densenet_cyborg_3"]
    assert checkpoint_run_names(["a/seed1/best.pth", "a/seed2/best.pth"]) == ["seed1", "seed2"]
    assert checkpoint_run_names(["ckpts/run_a.pth", "ckpts/run_b.pth"]) == ["run_a", "run_b"]
    assert checkpoint_run_names(["x/a/Logs/m.pth", "y/a/Logs/m.pth"]) == ["x", "y"]
    # the study's Grad-CAM folders: cams/<method>/<dataset>/<model>/<size>
    assert checkpoint_run_names(["c/gradcam/SG2/dn_xent_1/native", "c/gradcam/SG2/dn_xent_2/native"]) == [
        "dn_xent_1", "dn_xent_2"]
