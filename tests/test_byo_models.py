"""Architectures from elsewhere: the user's own module file, timm by name, a timm ViT."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from byo_fixtures import audit, image_tree, rows

from salience_audit.data.images import load_image
from salience_audit.measures.entropy import histogram_entropy
from salience_audit.models.audit_model import AuditModel, load_run
from salience_audit.models.checkpoint import ModelRecipe, attach_token_grid, build_from_recipe
from salience_audit.salience.extract import SalienceExtractor

USER_NET = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two conv stages, global average pooling, a linear head."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))
'''
CLI = ["--device", "cpu", "--no-report", "--batch-size", "4"]


def test_user_module_file_checkpoints_audited_end_to_end(tmp_path, capsys) -> None:
    source = tmp_path / "mynet.py"
    source.write_text(USER_NET, encoding="utf-8")
    data = image_tree(tmp_path / "data", ("0", "1"), per_class=2, size=32)
    recipe = ModelRecipe(model=f"{source}:TinyNet", input_size=32, normalize="half")
    for k in range(2):
        torch.manual_seed(k)
        net = build_from_recipe(recipe).module
        (tmp_path / "ckpt").mkdir(exist_ok=True)
        torch.save({"model": net.state_dict()}, tmp_path / "ckpt" / f"tiny_{k}.pth")
    code, _, err = audit(capsys, "--group", f"tiny={tmp_path / 'ckpt' / '*.pth'}", "--model", f"{source}:TinyNet",
                         "--input-size", "32", "--normalize", "half", "--manifest", str(data),
                         "--measures", "entropy,stability", "--out", str(tmp_path / "out"), *CLI)
    assert code == 0, err
    got = rows(tmp_path / "out", "entropy")
    assert sorted(got["run"].unique()) == ["tiny_0", "tiny_1"]
    assert len(rows(tmp_path / "out", "stability_ssim")) == 4
    # oracle: the same module wrapped by hand with the layer named explicitly
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet_oracle", source)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.TinyNet(num_classes=2)
    net.load_state_dict(torch.load(tmp_path / "ckpt" / "tiny_1.pth", weights_only=True)["model"])
    model = AuditModel.from_module(net.eval(), cam_layer="body", input_size=32, name="oracle")
    assert build_from_recipe(recipe).cam_layer == "body"  # found automatically: the last spatial layer
    mine = got[got["run"] == "tiny_1"]
    x = torch.stack([load_image(data / p, 32) for p in mine["path"]])
    want = histogram_entropy(SalienceExtractor(model, "gradcam")(x).maps).numpy()
    np.testing.assert_allclose(mine["value"].to_numpy(), want, rtol=0, atol=1e-6)


def test_run_json_can_name_a_factory(tmp_path) -> None:
    (tmp_path / "mynet.py").write_text(USER_NET, encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    recipe = ModelRecipe(model=f"{tmp_path / 'mynet.py'}:TinyNet", input_size=32)
    torch.save(build_from_recipe(recipe).module.state_dict(), run / "model.pt")
    (run / "run.json").write_text(json.dumps({"model": f"{tmp_path / 'mynet.py'}:TinyNet", "input_size": 32,
                                              "cam_layer": "stem", "name": "mine"}))
    model = load_run(run)
    assert model.name == "mine" and model.cam_layer == "stem" and model.input_size == 32


def test_target_layer_errors_name_close_layers(tmp_path) -> None:
    (tmp_path / "mynet.py").write_text(USER_NET, encoding="utf-8")
    with pytest.raises(Exception, match="closest names: body"):
        build_from_recipe(ModelRecipe(model=f"{tmp_path / 'mynet.py'}:TinyNet", input_size=32, target_layer="bdy"))


timm = pytest.importorskip("timm")


@pytest.mark.parametrize("arch", ["timm:resnet10t", "timm:vit_tiny_patch16_224"])
def test_timm_models_by_name_give_finite_maps_and_rows(arch, tmp_path, capsys) -> None:
    data = image_tree(tmp_path / "data", ("real", "fake"), per_class=1, size=64)
    recipe = ModelRecipe(arch=arch, input_size=64)
    for k in range(2):
        torch.manual_seed(k)
        torch.save(build_from_recipe(recipe).module.state_dict(), tmp_path / f"run{k}.pth")
    code, _, err = audit(capsys, "--group", f"t={tmp_path / 'run*.pth'}", "--arch", arch, "--input-size", "64",
                         "--manifest", str(data), "--measures", "entropy,stability", "--out", str(tmp_path / "o"),
                         *CLI)
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "o" / "results")
    assert {"entropy", "stability_ssim", "score"} <= set(table["measure"])
    assert np.isfinite(table["value"]).all()
    model = build_from_recipe(recipe)
    maps = SalienceExtractor(model, "gradcam")(torch.rand(2, 3, 64, 64)).maps
    assert torch.isfinite(maps).all() and float(maps.max()) == 1.0  # not the all-zero map
    if "vit" in arch:
        assert model.cam_layer == "blocks.11.norm1.token_grid.grid" and maps.shape == (2, 4, 4)


def test_token_grid_leaves_the_network_unchanged() -> None:
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    before, keys = net(x), list(net.state_dict())
    attach_token_grid(net.blocks[11].norm1, prefix_tokens=1, side=4)
    seen = []
    net.blocks[11].norm1.token_grid.grid.register_forward_hook(lambda m, i, out: seen.append(out.shape))
    torch.testing.assert_close(net(x), before, rtol=0, atol=0)
    assert list(net.state_dict()) == keys and seen == [(2, 192, 4, 4)]


def test_a_missing_extra_names_it(monkeypatch) -> None:
    import sys

    from salience_audit.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingExtraError, match=r"salience-audit\[byo\]"):
        build_from_recipe(ModelRecipe(arch="timm:resnet10t"))
