"""``mimax export --format torchvision|timm|safetensors``: each file loads with ``strict=True`` into
torchvision's or timm's model in a Python process that never imports mimax, following only the JSON
sidecar, and computes exactly the features mimax's backbone computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mimax.cli import main
from mimax.config import Config
from mimax.methods import build_method
from mimax.store.checkpoint import rng_state, save_checkpoint
from mimax.store.rundir import run_identity

pytest.importorskip("timm")
pytest.importorskip("safetensors")

DATASET_SHAPES = {"CIFAR10": (3, 32, 32), "FashionMNIST": (1, 28, 28)}


def fake_run(root: Path, name: str, arch: str, dataset: str, method: str = "SimCLR", width: int = 64):
    """A one-seed run directory as training writes it (config.json, a checkpoint in the trainer's format),
    with weights and BatchNorm statistics moved away from their initial values by two SGD steps."""
    shape = DATASET_SHAPES[dataset]
    cfg = Config(model_name=method, dataset=dataset, architecture=arch, num_classes=10, epochs=1, warmup_epochs=0,
                 batch_size=4, initial_lr=0.1, weight_decay=0.0, temperature=0.1, feature_dim=32, projection_dim=16,
                 projection_layer=2, model_save_interval=1, model_evaluation_interval=1, optimizer="sgd",
                 resnet_width=width, image_size=shape[1])
    torch.manual_seed(0)
    model = build_method(cfg, shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        x = torch.rand(4, *shape)
        loss = model(x, x.flip(3), 0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    run_dir = root / name
    (run_dir / "seed_0" / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(cfg.to_json())
    save_checkpoint({"method": method, "run_id": run_identity(cfg, 0), "architecture": arch, "dataset": dataset,
                     "epoch": 1, "step": 2, "seed": 0, "model": model.state_dict(), "optimizers": {},
                     "rng": rng_state(), "random_init": {}, "input_shape": list(shape)},
                    run_dir / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt")
    return run_dir, next(iter(model.encoders().values())).backbone.eval(), shape


LOADER = """
import json, sys, torch
for sidecar in sys.argv[1:]:
    info = json.load(open(sidecar))
    scope = {}
    exec(info["load"], scope)
    net = scope["net"].eval()
    x = torch.load(sidecar + ".x.pt", weights_only=True)
    with torch.no_grad():
        torch.save(net(x), sidecar + ".y.pt")
assert not any(m == "mimax" or m.startswith("mimax.") for m in sys.modules), "mimax was imported"
print("loaded", len(sys.argv) - 1)
"""


def export(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_exports_load_into_torchvision_and_timm_without_mimax(tmp_path, capsys):
    cases = [  # (run, architecture, dataset, --format, library the file must load into)
        ("r18", "ResNet18", "CIFAR10", "torchvision", "torchvision"),
        ("r18", "ResNet18", "CIFAR10", "timm", "timm"),
        ("r18", "ResNet18", "CIFAR10", "safetensors", "torchvision"),
        ("vit", "timm:vit_tiny_patch16_224", "CIFAR10", "timm", "timm"),
        ("vit", "timm:vit_tiny_patch16_224", "CIFAR10", "safetensors", "timm"),
        ("mnv3", "mobilenet_v3_small", "FashionMNIST", None, "torchvision"),
    ]
    runs, sidecars, expected = {}, [], []
    for name, arch, dataset, fmt, library in cases:
        if name not in runs:
            runs[name] = fake_run(tmp_path, name, arch, dataset)
        run_dir, backbone, shape = runs[name]
        out = tmp_path / f"{name}_{fmt}.{'safetensors' if fmt == 'safetensors' else 'pt'}"
        code, stdout, err = export(capsys, str(run_dir), "--out", str(out), *(["--format", fmt] if fmt else []))
        assert code == 0, err
        info = json.loads((tmp_path / (out.name + ".json")).read_text())
        assert info["library"] == library and info["architecture"] == arch and info["input_shape"] == list(shape)
        assert info["format"] == ("safetensors" if fmt == "safetensors" else "pt")
        assert info["stem"] == {"ResNet18": "cifar", "timm:vit_tiny_patch16_224": "patch4"}.get(arch, "none")
        mean = {"CIFAR10": [0.4914, 0.4822, 0.4465], "FashionMNIST": [0.2860]}[dataset]
        assert info["normalization"]["mean"] == mean
        assert info["feature_dim"] == {"ResNet18": 512, "mobilenet_v3_small": 1024}.get(arch, 192)
        x = torch.rand(3, *shape)
        torch.save(x, str(tmp_path / (out.name + ".json")) + ".x.pt")
        with torch.no_grad():
            expected.append(backbone(x))
        sidecars.append(str(tmp_path / (out.name + ".json")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", LOADER, *sidecars], capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for sidecar, want in zip(sidecars, expected):
        got = torch.load(sidecar + ".y.pt", weights_only=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_export_refuses_formats_with_no_matching_model(tmp_path, capsys):
    vit_dir, _, _ = fake_run(tmp_path, "vit", "timm:vit_tiny_patch16_224", "CIFAR10")
    narrow_dir, backbone, shape = fake_run(tmp_path, "narrow", "ResNet18", "CIFAR10", width=16)
    for run_dir, fmt, fragment in ((vit_dir, "torchvision", "is a timm model"),
                                   (narrow_dir, "torchvision", "base width != 64"),
                                   (narrow_dir, "timm", "base width != 64")):
        out = tmp_path / f"x_{fmt}.pt"
        code, _, err = export(capsys, str(run_dir), "--out", str(out), "--format", fmt)
        assert code == 2 and err.startswith(f"mimax: error: --format {fmt}: ") and fragment in err, err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists() and not (tmp_path / (out.name + ".json")).exists()
    # the narrow ResNet has no counterpart elsewhere: safetensors of mimax's own backbone, said in the sidecar
    out = tmp_path / "narrow.safetensors"
    code, stdout, err = export(capsys, str(narrow_dir), "--out", str(out), "--format", "safetensors")
    assert code == 0, err
    info = json.loads((tmp_path / "narrow.safetensors.json").read_text())
    assert info["library"] == "mimax" and info["load"] is None and "--resnet_width 16" in info["loads_into"]
    from safetensors.torch import load_file

    state = load_file(str(out))
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
    # an existing file (or sidecar) is never overwritten without --overwrite
    code, _, err = export(capsys, str(narrow_dir), "--out", str(out), "--format", "safetensors")
    assert code == 2 and "already exists" in err


def test_a_safetensors_name_without_format_writes_safetensors(tmp_path, capsys):
    """`--out x.safetensors` alone wrote torch's zip format under that name (embed --backbone then failed)."""
    from safetensors.torch import load_file

    run_dir = fake_run(tmp_path, "r", "ResNet18", "CIFAR10", width=8)[0]
    out = tmp_path / "b.safetensors"
    code, _, err = export(capsys, str(run_dir), "--out", str(out))
    assert code == 0, err
    assert json.loads((tmp_path / "b.safetensors.json").read_text())["format"] == "safetensors"
    tensors = load_file(str(out))  # safetensors' own reader (a torch zip raises SafetensorError)
    assert "conv1.weight" in tensors and tensors["conv1.weight"].shape[0] == 8


def test_a_safetensors_backbone_without_safetensors_installed_says_what_to_install(tmp_path, capsys):
    """It read "does not load into ResNet18 ... (No module named 'safetensors')": a bad file, not a missing
    package. The package is hidden from a child process the way Python does for a module that is absent."""
    run_dir = fake_run(tmp_path, "r", "ResNet18", "CIFAR10", width=8)[0]
    backbone = tmp_path / "b.safetensors"
    assert export(capsys, str(run_dir), "--out", str(backbone))[0] == 0
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(images / "a.png")
    code = ("import sys; sys.modules['safetensors'] = None; sys.modules['safetensors.torch'] = None\n"
            "from mimax.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "embed", str(images), "--backbone", str(backbone),
                          "--out", str(tmp_path / "e.npz")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (f"mimax: error: --backbone {backbone} (a safetensors file): needs the safetensors "
                                  "package: pip install 'mimax[export]'")
    assert not (tmp_path / "e.npz").exists()
