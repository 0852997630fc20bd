"""Architecture registry, checkpoints and the AuditModel wrapper (all offline, CPU, small)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from salience_audit.errors import InputError, ModelError, WeightsUnavailableError
from salience_audit.models import (
    ARCHITECTURES,
    AuditModel,
    build_model,
    get_spec,
    list_architectures,
    load_run,
    load_trusted_module,
)
from salience_audit.models.registry import guess_architecture, pretrained_weights_file

# Native map size at each architecture's own input size.
EXPECTED_MAP = {
    "small_cnn": 8,
    "resnet18": 7,
    "resnet50": 7,
    "densenet121": 7,
    "inception_v3": 8,
    "efficientnet_b0": 7,
    "mobilenet_v3_large": 7,
    "convnext_tiny": 7,
}


def test_registry_lists_every_architecture() -> None:
    assert list_architectures() == list(EXPECTED_MAP)
    assert get_spec("resnet50").cam_layer == "layer4"
    assert get_spec("densenet121").classifier_layer == "classifier"
    assert get_spec("inception_v3").input_size == 299
    assert not get_spec("mobilenet_v3_large").cam_exact
    assert not get_spec("convnext_tiny").cam_exact
    assert all(ARCHITECTURES[n].cam_exact for n in ("small_cnn", "resnet50", "densenet121", "inception_v3"))


def test_unknown_architecture_lists_known_names() -> None:
    with pytest.raises(ModelError, match="resnet50.*densenet121"):
        get_spec("resnet51")


@pytest.mark.parametrize("name", list(EXPECTED_MAP))
def test_builds_and_maps_at_input_size(name: str) -> None:
    torch.manual_seed(0)
    spec = get_spec(name)
    module = build_model(name, num_classes=2).eval()
    captured: list[torch.Tensor] = []
    handle = module.get_submodule(spec.cam_layer).register_forward_hook(lambda m, i, o: captured.append(o))
    s = spec.input_size
    with torch.no_grad():
        logits = module(torch.randn(1, 3, s, s))
    handle.remove()
    assert logits.shape == (1, 2)
    assert torch.isfinite(logits).all()
    k = EXPECTED_MAP[name]
    assert captured[-1].dim() == 4 and tuple(captured[-1].shape[-2:]) == (k, k)
    head = module.get_submodule(spec.classifier_layer)
    assert isinstance(head, nn.Linear) and head.out_features == 2


def test_num_classes_sets_head() -> None:
    assert build_model("resnet18", num_classes=5).fc.out_features == 5


def test_imagenet_missing_names_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("resnet50", weights="imagenet")
    msg = str(info.value)
    assert "resnet50-11ad3fa6.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(ModelError, match="no ImageNet weights"):
        build_model("small_cnn", weights="imagenet")


@pytest.mark.parametrize("name", ["resnet18", "inception_v3"])
def test_imagenet_from_local_cache(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in the cache is used (never downloaded); the head is replaced for num_classes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from torchvision.models import get_model

    extra = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    reference = get_model(name, weights=None, num_classes=1000, **extra)
    _, path = pretrained_weights_file(name)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    module = build_model(name, num_classes=2, weights="imagenet")
    assert module.fc.out_features == 2
    first = next(iter(reference.state_dict()))
    assert torch.equal(module.state_dict()[first], reference.state_dict()[first])
    if name == "inception_v3":
        assert module.AuxLogits is None and not module.transform_input
        assert module.eval()(torch.rand(1, 3, 299, 299)).shape == (1, 2)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = build_model("small_cnn")
    sd = module.state_dict()
    plain, wrapped, prefixed = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    torch.save(sd, plain)
    torch.save({"state_dict": sd, "epoch": 3}, wrapped)
    torch.save(AuditModel.from_module(module, "features", 64).state_dict(), prefixed)
    for path in (plain, wrapped, prefixed):
        loaded = build_model("small_cnn", weights=path)
        for key, value in sd.items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_wrong_class_count_and_arch(tmp_path: Path) -> None:
    three = tmp_path / "three.pt"
    torch.save(build_model("small_cnn", num_classes=3).state_dict(), three)
    with pytest.raises(InputError, match=r"three\.pt.*'small_cnn' with num_classes=3"):
        build_model("small_cnn", num_classes=2, weights=three)
    r18 = tmp_path / "r18.pt"
    torch.save(build_model("resnet18").state_dict(), r18)
    with pytest.raises(InputError, match=r"r18\.pt.*'resnet18' with num_classes=2"):
        build_model("resnet50", weights=r18)
    assert guess_architecture(torch.load(r18, weights_only=True)) == ("resnet18", 2)


def test_checkpoint_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.pt.*not found"):
        build_model("small_cnn", weights=tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(InputError, match="junk.pt.*not a state dict"):
        build_model("small_cnn", weights=junk)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match="text.pt"):
        build_model("small_cnn", weights=text)
    pickled = tmp_path / "full.pt"
    torch.save(build_model("small_cnn"), pickled)
    with pytest.raises(InputError, match="full.pt.*trust=True"):
        build_model("small_cnn", weights=pickled)


def test_trusted_module_needs_flag(tmp_path: Path) -> None:
    pickled = tmp_path / "full.pt"
    torch.save(build_model("small_cnn"), pickled)
    with pytest.raises(InputError, match="trust=True"):
        load_trusted_module(pickled, trust=False)
    assert isinstance(load_trusted_module(pickled, trust=True), nn.Module)


def test_audit_model_normalises_and_moves() -> None:
    torch.manual_seed(0)
    model = AuditModel.from_arch("small_cnn").eval()
    assert (model.input_size, model.cam_layer, model.classifier_layer) == (64, "features", "classifier")
    assert model.class_names == ("Real", "Synthetic")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model.module((x - 0.5) / 0.5))
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.shape == (1, 3, 1, 1)
    assert all(k.startswith("module.") for k in model.state_dict())  # no normalisation buffers saved
    assert model.device == torch.device("cpu")
    assert model.to(torch.float64).mean.dtype == torch.float64


def test_resolve_layer_suggests_names() -> None:
    model = AuditModel.from_arch("small_cnn")
    assert model.resolve_layer("features") is model.module.features
    with pytest.raises(ModelError, match="featres.*closest names: features"):
        model.resolve_layer("featres")
    with pytest.raises(ModelError, match="closest"):
        AuditModel.from_module(build_model("small_cnn"), cam_layer="featurez", input_size=64)


def test_from_module_finds_classifier_and_rejects_mlp() -> None:
    model = AuditModel.from_module(build_model("small_cnn"), cam_layer="features", input_size=64, name="x")
    assert model.classifier_layer == "classifier" and model.cam_exact is None
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ModelError, match="no convolutional layer for CAM"):
        AuditModel.from_module(mlp, cam_layer="1", input_size=2)


def test_load_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = build_model("small_cnn")
    torch.save(module.state_dict(), tmp_path / "model.pt")
    spec = get_spec("small_cnn")
    meta = {
        "arch": "small_cnn", "num_classes": 2, "input_size": 64, "mean": list(spec.mean), "std": list(spec.std),
        "cam_layer": "features", "classifier_layer": "classifier", "seed": 7,
    }
    (tmp_path / "run.json").write_text(json.dumps(meta))
    model = load_run(tmp_path)
    assert model.name == "small_cnn-seed7" and model.arch == "small_cnn" and model.cam_exact
    assert torch.equal(model.module.classifier.weight, module.classifier.weight)
    assert {k: v for k, v in model.metadata().items() if k in meta} == {k: v for k, v in meta.items() if k != "seed"}
    (tmp_path / "model.pt").unlink()
    with pytest.raises(InputError, match="model.pt"):
        load_run(tmp_path)
    with pytest.raises(InputError, match="run.json"):
        load_run(tmp_path / "nowhere")
