"""Small inputs for the bring-your-own tests: image folders, checkpoints as other code writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from salience_audit.cli import main


def image_tree(root: Path, classes: tuple[str, str] = ("real", "fake"), per_class: int = 2, size: int = 48,
               seed: int = 0) -> Path:
    """A class-per-folder tree of random RGB PNGs (``root/<class>/<k>.png``)."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}_{k}.png")
    return root


def cyborg_style_checkpoint(arch: str, path: Path, seed: int) -> nn.Module:
    """A random-weight torchvision network saved the way the CYBORG training code saves it.

    ``classifier`` (DenseNet) or ``fc`` (ResNet) is replaced by ``nn.Linear(in, 2)``; one SGD
    step fills the optimizer's momentum buffers; the file holds
    ``{'state_dict', 'optimizer', 'epoch'}`` and sits at ``.../Logs/final_model.pth``.
    """
    from torchvision import models

    torch.manual_seed(seed)
    net = getattr(models, arch)(weights=None)
    if arch.startswith("densenet"):
        net.classifier = nn.Linear(net.classifier.in_features, 2)
    else:
        net.fc = nn.Linear(net.fc.in_features, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.005, momentum=0.9)
    net.eval()  # batch statistics of two random images would make the running stats meaningless
    loss = nn.functional.cross_entropy(net(torch.rand(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 49}, path)
    return net


def run_folder(folder: Path, net: nn.Module, arch: str, name: str, input_size: int) -> Path:
    """The same weights as a ``run.json`` + ``model.pt`` run folder (what ``salience-audit train`` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    (folder / "run.json").write_text(json.dumps({"arch": arch, "num_classes": 2, "input_size": input_size,
                                                 "name": name}), encoding="utf-8")
    return folder


def audit(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``salience-audit audit ARGS --quiet``; (exit code, stdout, stderr)."""
    code = main(["audit", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: Path, measure: str) -> pd.DataFrame:
    """Result rows of one measure, sorted by run, dataset and image index."""
    table = pd.read_parquet(out / "results")
    table = table[table["measure"] == measure]
    return table.sort_values(["run", "dataset", "index"]).reset_index(drop=True)
