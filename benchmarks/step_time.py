"""Training-step time of every mimax method ÷ the backbone's own floor, and vs lightly at identical settings.

Setting (docs/performance.md): CIFAR-stem ResNet-18 at base width 16, 32x32 inputs, batch 256 per view
(512 images per step), SGD momentum 0.9, pre-made random views (no augmentation), median of ``--steps``
steps after ``--warmup``. Each precision setting is measured in the same run:
``fp32`` (contiguous NCHW) and ``bf16`` (autocast + channels_last).

Floors: backbone forward+backward of both views (one concatenated batch, and one view after the other;
the floor is the faster of the two), plus, for two-encoder methods (online + target), a no-grad forward
of both views through a second backbone. Heads are NOT in the floor, so head cost shows in the ratio.

lightly (optional, ``--lightly_path DIR``: a directory holding lightly 1.6, e.g. from
``pip install --no-deps --target DIR lightly==1.6.0``; it is never a mimax dependency): each method's
step written as lightly's examples write it (its loss and head modules, its EMA helpers) on the same
backbone, batch, precision, layout and head sizes as ours. Column "ours ÷ lightly" = lightly's step time
÷ ours (> 1: we are faster).

    python benchmarks/step_time.py --threads 2 --lightly_path /tmp/lightly_pkgs
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from common import cifar_resnet18, known, machine_info, positive_int
from torch import nn

HIDDEN, OUT, PRED_HIDDEN = 512, 128, 512  # head sizes used by both libraries
# Projector layer counts as lightly's heads have them (ours are set to match).
LAYERS = {"SimCLR": 2, "BYOL": 2, "SimSiam": 3, "BarlowTwins": 3, "VICReg": 3, "MoCoV3": 3, "JMI": 2, "SDMI": 2}


def our_method(name: str, width: int):
    from mimax.methods import METHODS
    from mimax.nets import EncoderSpec

    cls = METHODS[name]
    names = cls.Options.names()
    options = {k: v for k, v in cls.Options.presets("CIFAR10").items() if k in names}
    if "predictor_dim" in names:
        options["predictor_dim"] = PRED_HIDDEN
    spec = EncoderSpec("ResNet18", HIDDEN, OUT, LAYERS.get(name, 2), resnet_width=width)
    return cls(cls.Options(**options), spec, (3, 32, 32))


def our_step(method, precision: str, channels_last: bool):
    from mimax.engine.optim import build_optimizer
    from mimax.engine.precision import StepPrecision, prepare_model

    prepare_model(method, channels_last, compile_backbones=False)
    opts = {k: build_optimizer("sgd", g, 0.05, 1e-4, 0.9) for k, g in method.optimizer_groups().items()}
    prec = StepPrecision(precision, torch.device("cpu"))
    state = {"step": 0}

    def step(x_a, x_b):
        active = opts[method.active_optimizer(state["step"])]
        with prec.autocast():
            loss = method(x_a, x_b, state["step"])["loss"]
        active.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(active)
        method.after_step(state["step"], 1000)
        state["step"] += 1

    return step


def floor_steps(width: int, autocast, channels_last: bool):
    backbone, _ = cifar_resnet18(width)
    target, _ = cifar_resnet18(width)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
        target.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(backbone.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    def cat(x_a, x_b):
        with autocast():
            h = backbone(torch.cat([x_a, x_b]))
        opt.zero_grad(set_to_none=True)
        h.float().square().mean().backward()
        opt.step()

    def separate(x_a, x_b):
        with autocast():
            h_a, h_b = backbone(x_a), backbone(x_b)
        opt.zero_grad(set_to_none=True)
        (h_a.float().square().mean() + h_b.float().square().mean()).backward()
        opt.step()

    def target_forward(x_a, x_b):
        with torch.no_grad(), autocast():
            target(x_a), target(x_b)

    return cat, separate, target_forward


def lightly_step(name: str, width: int, autocast, channels_last: bool):
    """One training step as lightly 1.6's examples write it, with our head sizes."""
    from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
    from lightly.models.modules import heads
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    backbone, dim = cifar_resnet18(width)
    modules = nn.ModuleDict({"backbone": backbone})
    ema = None
    if name == "SimCLR":
        modules["proj"] = heads.SimCLRProjectionHead(dim, HIDDEN, OUT, num_layers=2)
        crit = NTXentLoss(temperature=0.1)
    elif name == "BarlowTwins":
        modules["proj"] = heads.BarlowTwinsProjectionHead(dim, HIDDEN, OUT)
        crit = BarlowTwinsLoss()
    elif name == "VICReg":
        modules["proj"] = heads.VICRegProjectionHead(dim, HIDDEN, OUT, num_layers=3)
        crit = VICRegLoss()
    elif name == "SimSiam":
        modules["proj"] = heads.SimSiamProjectionHead(dim, HIDDEN, OUT)
        modules["pred"] = heads.SimSiamPredictionHead(OUT, PRED_HIDDEN, OUT)
        crit = NegativeCosineSimilarity()
    elif name in ("BYOL", "MoCoV3"):
        if name == "BYOL":
            modules["proj"] = heads.BYOLProjectionHead(dim, HIDDEN, OUT)
            modules["pred"] = heads.BYOLPredictionHead(OUT, PRED_HIDDEN, OUT)
            crit = NegativeCosineSimilarity()
        else:
            modules["proj"] = heads.MoCoProjectionHead(dim, HIDDEN, OUT, num_layers=3, batch_norm=True)
            modules["pred"] = heads.MoCoProjectionHead(OUT, PRED_HIDDEN, OUT, num_layers=2, batch_norm=True)
            crit = NTXentLoss(temperature=0.2)
        ema = nn.ModuleDict({"backbone": copy.deepcopy(backbone), "proj": copy.deepcopy(modules["proj"])})
        deactivate_requires_grad(ema)
    else:
        raise ValueError(name)
    if channels_last:
        modules.to(memory_format=torch.channels_last)
        if ema is not None:
            ema.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(modules.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    def step(x_a, x_b):
        if ema is not None:
            update_momentum(modules["backbone"], ema["backbone"], 0.99)
            update_momentum(modules["proj"], ema["proj"], 0.99)
        with autocast():
            z_a, z_b = modules["proj"](backbone(x_a)), modules["proj"](backbone(x_b))
            if name in ("SimCLR", "BarlowTwins", "VICReg"):
                loss = crit(z_a, z_b)
            elif name == "SimSiam":
                p_a, p_b = modules["pred"](z_a), modules["pred"](z_b)
                loss = 0.5 * (crit(p_a, z_b.detach()) + crit(p_b, z_a.detach()))
            else:
                p_a, p_b = modules["pred"](z_a), modules["pred"](z_b)
                with torch.no_grad():
                    t_a, t_b = ema["proj"](ema["backbone"](x_a)), ema["proj"](ema["backbone"](x_b))
                loss = 0.5 * (crit(p_a, t_b) + crit(p_b, t_a)) if name == "BYOL" else \
                    crit(p_a, t_b) + crit(p_b, t_a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=positive_int, default=16)
    parser.add_argument("--batch", type=positive_int, default=256, help="images per view")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=positive_int, default=10, help="timed rounds")
    parser.add_argument("--settings", default="bf16,fp32", help="comma list of bf16 (autocast+channels_last), fp32")
    parser.add_argument("--methods", default="", help="comma list (default: every registered method)")
    parser.add_argument("--lightly_path", default="", help="directory holding lightly 1.6 (optional)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_info())
    from mimax.methods import METHODS

    names = known(parser, "--methods", args.methods.split(","), METHODS) if args.methods else list(METHODS)
    known(parser, "--settings", args.settings.split(","), {"bf16", "fp32"})
    lightly_ok = False
    if args.lightly_path:
        sys.path.insert(0, args.lightly_path)
        try:
            import lightly

            lightly_ok = True
            print(f"lightly {lightly.__version__} from {args.lightly_path}")
        except ImportError as exc:
            print(f"lightly not importable from {args.lightly_path}: {exc}")
    print(f"backbone: CIFAR ResNet-18 width {args.width}, 32 px, batch {args.batch}/view, SGD; median of "
          f"{args.steps} steps after {args.warmup}")
    for setting in args.settings.split(","):
        bf16 = setting == "bf16"
        precision, channels_last = ("bf16", True) if bf16 else ("fp32", False)

        def autocast(_bf16=bf16):
            return torch.autocast("cpu", dtype=torch.bfloat16) if _bf16 else nullcontext()

        gen = torch.Generator().manual_seed(1)
        x_a, x_b = (torch.rand(args.batch, 3, 32, 32, generator=gen) for _ in range(2))
        if channels_last:
            x_a, x_b = (x.contiguous(memory_format=torch.channels_last) for x in (x_a, x_b))

        cat, separate, target = floor_steps(args.width, autocast, channels_last)
        print(f"\n## {setting}{' (autocast + channels_last)' if bf16 else ' (NCHW)'}\n")
        print("Each row interleaves floor, ours and lightly step by step (round-robin, so load changes hit all "
              "three alike); times are medians over rounds, ratios are medians of per-round ratios.\n")
        print("| method | floor s (cat / separate / target fwd) | ours s/step | ours ÷ floor | lightly s/step | "
              "lightly ÷ floor | ours ÷ lightly (speed) |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            steps = {"cat": cat, "sep": separate, "target": target}
            two_encoders = False
            if name in METHODS:
                method = our_method(name, args.width)
                two_encoders = any(not p.requires_grad for p in method.parameters()) or \
                    len({id(e) for e in method.encoders().values()}) > 1
                steps["ours"] = our_step(method, precision, channels_last)
            if lightly_ok and name in ("SimCLR", "BYOL", "SimSiam", "BarlowTwins", "VICReg", "MoCoV3"):
                steps["lightly"] = lightly_step(name, args.width, autocast, channels_last)
            t = interleaved(steps, (x_a, x_b), args.warmup, args.steps)
            floor = [min(c, s) + (g if two_encoders else 0.0) for c, s, g in zip(t["cat"], t["sep"], t["target"])]
            med = {k: statistics.median(v) for k, v in t.items()}
            row = [name, f"{med['cat']:.3f} / {med['sep']:.3f} / {med['target']:.3f}"]
            for key in ("ours", "lightly"):
                if key in t:
                    ratio = statistics.median(a / f for a, f in zip(t[key], floor))
                    row += [f"{med[key]:.3f}", f"{ratio:.2f}{' (+ target)' if two_encoders else ''}"]
                else:
                    row += ["-", "-"]
            if "ours" in t and "lightly" in t:
                row.append(f"{statistics.median(b / a for a, b in zip(t['ours'], t['lightly'])):.2f}")
            else:
                row.append("-")
            print("| " + " | ".join(row) + " |", flush=True)


def interleaved(steps: dict, views, warmup: int, rounds: int) -> dict[str, list[float]]:
    """Per-round wall times of each step, the steps run round-robin."""
    for step in steps.values():
        for _ in range(warmup):
            step(*views)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step(*views)
            times[key].append(time.perf_counter() - t0)
    return times

if __name__ == "__main__":
    main()
