"""The input pipeline per rank: images read and augmented, pipeline ÷ training throughput, W-process wall time.

For each dataset (Fashion-MNIST in memory, from /usr/share/datasets/fashion-mnist; a folder of 320x240
JPEG files written here from Fashion-MNIST tiles), each path (per-image torchvision views in DataLoader
workers; ``--gpu_augment`` batched views, here on the CPU) and W = 1 and 2 processes (``torchrun``,
gloo), every rank builds its data with ``build_data`` exactly as training does and measures:

- reads / augments: the images its pipeline read (decoded or indexed) and augmented in one epoch, logged
  by the loader's own read and augment functions (also in the workers) with their indices; must be N/W
  per rank, and the ranks' indices disjoint;
- pipeline img/s: one epoch of the loader alone (each image gives two views);
- training img/s: the engine's training step (method, optimizers, precision, DDP) on one pre-made batch;
- epoch wall: one epoch of loader + training step, as the trainer runs it.

Img/s are global (B per step over all ranks). Each rank uses ``--threads`` torch threads (1: on a
shared machine, OpenMP threads that spin on busy cores slow a step down many times) and one worker.

    PYTHONPATH=src python benchmarks/pipeline.py --images 2048 --batch 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, positive_int  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")


MARKER = ".mimax_pipeline_bench"  # in every folder this script writes: the only folders it empties


def own_folder(path: Path) -> Path:
    """``path``, created, or found holding this script's marker: a folder of someone else's is refused, never
    written into or emptied."""
    if path.exists() and not (path / MARKER).is_file() and (not path.is_dir() or any(path.iterdir())):
        sys.exit(f"pipeline: error: {path} exists and was not made by this benchmark; give a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return path


def write_jpegs(root: Path, n: int) -> None:
    """``n`` 320x240 RGB JPEGs (quality 90), each a 4x3 grid of tinted, upscaled Fashion-MNIST images, in
    ``root`` (a folder this script owns: one left by an earlier run with another ``n`` is rewritten, so the
    folder holds exactly the N images the table's header names). Image i is the same whatever ``n``."""
    import numpy as np
    from PIL import Image

    from mimax.data.idx import read_idx

    own_folder(root)
    existing = sorted(root.glob("*.jpg"))
    if [p.name for p in existing] == [f"{i:05d}.jpg" for i in range(n)]:
        return
    for p in existing:
        p.unlink()
    images = read_idx(FMNIST / "train-images-idx3-ubyte.gz", 3)
    rng = np.random.default_rng(0)
    for i in range(n):
        tiles = images[rng.integers(0, len(images), 12)].reshape(3, 4, 28, 28).transpose(0, 2, 1, 3)
        gray = np.kron(tiles.reshape(84, 112), np.ones((3, 3)))[:240, :320]
        tint = rng.uniform(0.4, 1.0, 3)
        rgb = (gray[..., None] * tint).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / f"{i:05d}.jpg", quality=90)


def config(dataset: str, path: str, args):
    from mimax.config import resolve

    common = dict(model_name="SimCLR", batch_size=args.batch, num_workers=1, gpu_augment=path == "batched",
                  device="cpu", monitor_size=64, augmentation=True, resnet_width=16, epochs=1, warmup_epochs=0)
    if dataset == "fmnist":
        return resolve({**common, "dataset": "FashionMNIST", "train_subset": args.images})
    return resolve({**common, "dataset": "Folder", "data_dir": str(args.jpeg_dir), "image_size": args.jpeg_size,
                    "architecture": "ResNet18"})


def instrument(log_dir: Path) -> None:
    """Log every read and augmentation of the loader's own functions (in this process and its workers)."""
    from mimax.data import images, loading
    from mimax.data.views import BatchedViews

    def log(kind: str, indices) -> None:
        line = f"{kind} {' '.join(map(str, indices))}\n".encode()
        fd = os.open(log_dir / f"{os.environ.get('RANK', '0')}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line)
        os.close(fd)

    pairs, squares, apply = images.ViewPairs.__call__, images.Squares.__call__, BatchedViews.apply
    gather = loading.ImageViewLoader.gather

    def logged_pairs(self, index):
        log("read+augment", [index])
        return pairs(self, index)

    def logged_squares(self, index):
        log("read", [index])
        return squares(self, index)

    def logged_apply(self, x, params):
        log("augment", [x.shape[0]])
        return apply(self, x, params)

    def logged_gather(self, indices):  # in-memory batched path: the rows indexed on the device
        log("read", indices.tolist())
        return gather(self, indices)

    images.ViewPairs.__call__, images.Squares.__call__ = logged_pairs, logged_squares
    BatchedViews.apply, loading.ImageViewLoader.gather = logged_apply, logged_gather


def rank_main(args) -> None:
    from mimax.data import build_data
    from mimax.engine.optim import build_optimizer
    from mimax.engine.precision import StepPrecision, prepare_model, resolve_precision, to_layout
    from mimax.methods import build_method
    from mimax.runtime import distributed

    log_dir = Path(args.out)
    instrument(log_dir)
    cfg = config(args.dataset, args.path, args)
    device = distributed.init_from_env("cpu")
    cfg.precision = resolve_precision(cfg.precision, device, cfg.architecture)[0]
    rank, world = distributed.rank(), distributed.world_size()
    torch.set_num_threads(args.threads)
    data = build_data(cfg, device, 0, rank, world)
    distributed.barrier()
    loader = data.train_views
    for _ in loader.epoch(0):  # warm-up: worker start
        pass
    log_dir.joinpath(f"{rank}.log").unlink(missing_ok=True)
    distributed.barrier()
    t0 = time.perf_counter()
    batches = [(a, b) for a, b in loader.epoch(1)]
    t_pipe = time.perf_counter() - t0
    counted = log_dir.joinpath(f"{rank}.log").read_text() if log_dir.joinpath(f"{rank}.log").exists() else ""
    log_dir.joinpath(f"{rank}.log").unlink(missing_ok=True)

    torch.manual_seed(0)
    method = build_method(cfg, data.input_shape).to(device)
    prepare_model(method, cfg.channels_last, False)
    opts = {n: build_optimizer(cfg.optimizer, g, cfg.initial_lr, cfg.weight_decay, cfg.momentum, cfg.lars_eta)
            for n, g in method.optimizer_groups().items()}
    model = distributed.wrap_ddp(method, device, [[p for g in o.param_groups for p in g["params"]]
                                                  for o in opts.values()])
    precision = StepPrecision(cfg.precision, device)
    counter = [0]

    def step(x_a, x_b):
        x_a, x_b = to_layout(x_a, cfg.channels_last), to_layout(x_b, cfg.channels_last)
        name = method.active_optimizer(counter[0])
        with precision.autocast():
            loss = model(x_a, x_b, counter[0])["loss"]
        opts[name].zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(opts[name])
        counter[0] += 1

    step(*batches[0])
    distributed.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(*batches[0])
    t_train = (time.perf_counter() - t0) / args.steps
    distributed.barrier()
    t0 = time.perf_counter()
    for x_a, x_b in loader.epoch(2):
        step(x_a, x_b)
    distributed.barrier()
    t_epoch = time.perf_counter() - t0
    result = {"rank": rank, "world": world, "steps": len(loader), "per_rank_batch": batches[0][0].shape[0],
              "pipeline_s": t_pipe, "train_step_s": t_train, "epoch_s": t_epoch, "log": counted,
              "precision": cfg.precision, "threads": torch.get_num_threads()}
    (log_dir / f"result{rank}.json").write_text(json.dumps(result))


def summarize(out: Path, n_images: int, batch: int) -> dict:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("result*.json"))]
    world = results[0]["world"]
    reads, augments, index_sets = [], [], []
    for r in results:
        read, aug, idx = 0, 0, []
        for line in r["log"].splitlines():
            kind, *vals = line.split()
            if kind == "read+augment":
                read, aug, idx = read + 1, aug + 1, idx + [int(v) for v in vals]
            elif kind == "read":
                read, idx = read + len(vals), idx + [int(v) for v in vals]
            elif kind == "augment":
                aug += int(vals[0])
        reads.append(read)
        augments.append(aug)
        index_sets.append(set(idx))
    disjoint = all(not (a & b) for i, a in enumerate(index_sets) for b in index_sets[i + 1:])
    steps = results[0]["steps"]
    slowest = max(r["pipeline_s"] for r in results)
    return {"world": world, "reads": reads, "augments": augments, "expected": steps * batch // world,
            "disjoint": disjoint and sum(len(s) for s in index_sets) == steps * batch,
            "pipeline_ips": steps * batch / slowest, "train_ips": batch / max(r["train_step_s"] for r in results),
            "epoch_s": max(r["epoch_s"] for r in results), "precision": results[0]["precision"],
            "threads": results[0]["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=positive_int, default=2048, help="training images N (both datasets)")
    parser.add_argument("--batch", type=positive_int, default=256, help="global batch B")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed training steps on a pre-made batch")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads per rank")
    parser.add_argument("--jpeg_dir", type=Path, default=Path("/tmp/mimax_pipeline_jpegs"))
    parser.add_argument("--jpeg_size", type=int, default=64, help="--image_size on the JPEG folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mimax_pipeline_bench"))
    parser.add_argument("--rank_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="fmnist", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="per-image", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if args.rank_worker:
        rank_main(args)
        return
    print(machine_info())
    own_folder(args.work)  # first: a --jpeg_dir inside it is then inside the script's own folder
    write_jpegs(args.jpeg_dir, args.images)
    rows = []
    for dataset in ("fmnist", "jpeg"):
        for path in ("per-image", "batched"):
            walls = {}
            for world in (1, 2):
                out = own_folder(args.work) / f"{dataset}-{path}-{world}"
                own_folder(out)
                for p in [*out.glob("*.log"), *out.glob("result*.json")]:  # an earlier run's, of this script
                    p.unlink()
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
                       __file__, "--rank_worker", "--dataset", dataset, "--path", path, "--out", str(out),
                       "--images", str(args.images), "--batch", str(args.batch), "--steps", str(args.steps),
                       "--threads", str(args.threads), "--jpeg_dir", str(args.jpeg_dir),
                       "--jpeg_size", str(args.jpeg_size)]
                env = {**os.environ, "OMP_NUM_THREADS": "1",
                       "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode:
                    sys.exit(f"{dataset} {path} W={world} failed:\n{res.stderr[-3000:]}")
                s = summarize(out, args.images, args.batch)
                walls[world] = s["epoch_s"]
                rows.append((dataset, path, s, walls))
                print(f"{dataset} {path} W={world}: {s}", flush=True)
    print(f"\nN = {args.images}, B = {args.batch}; precision {rows[0][2]['precision']}; JPEGs 320x240 at "
          f"--image_size {args.jpeg_size}; Fashion-MNIST 28 px\n")
    print("| dataset | path | W | images read per rank | augmented per rank | N/W (full batches) | ranks disjoint "
          "| pipeline img/s | training img/s | pipeline ÷ training | epoch wall s | W=2 ÷ W=1 wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset, path, s, walls in rows:
        ratio = f"{walls[2] / walls[1]:.2f}" if s["world"] == 2 else ""
        print(f"| {'Fashion-MNIST (memory)' if dataset == 'fmnist' else 'JPEG folder'} | {path} | {s['world']} | "
              f"{', '.join(map(str, s['reads']))} | {', '.join(map(str, s['augments']))} | {s['expected']} | "
              f"{'yes' if s['disjoint'] else 'NO'} | {s['pipeline_ips']:.0f} | {s['train_ips']:.0f} | "
              f"{s['pipeline_ips'] / s['train_ips']:.2f} | {s['epoch_s']:.1f} | {ratio} |")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
