"""Data-pipeline throughput ÷ training throughput (images per second, each image giving two views).

Training: the SimCLR step on the CIFAR ResNet-18 at base width 16, 32 px, batch 256 per view, bf16 autocast
+ channels_last (the fast setting of benchmarks/step_time.py). Pipelines, on synthetic uint8 CIFAR-shaped
images, each measured alone (on a 2-core machine they share the cores with training in a real run):

- per-image torchvision v2 SimCLR views in DataLoader workers, through :class:`mimax.data.loading.DataLoaderViews`
  (persistent workers, per-sample seeding), with 1 and 2 workers;
- batched views (``--gpu_augment``: :class:`mimax.data.views.BatchedViews`) on the CPU, 1 and 2 threads.

    python benchmarks/pipeline.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine_info, median_step_time
from step_time import our_method, our_step
from torch.utils.data import Dataset


class SyntheticImages(Dataset):
    def __init__(self, images: torch.Tensor, views):
        self.images, self.views = images, views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.views(self.images[i])


def images_per_second(loader, epochs: int = 2) -> float:
    """Throughput over ``epochs`` epochs after a first (warm-up: worker start) epoch."""
    for _ in loader.epoch(0):
        pass
    t0, n = time.perf_counter(), 0
    for e in range(1, epochs + 1):
        for x_a, _ in loader.epoch(e):
            n += x_a.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=2048, help="synthetic dataset size")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    try:
        from mimax.data.views import BatchedViews, TorchvisionViews, make_recipe
    except ImportError:
        raise SystemExit("this mimax build has no mimax.data.views (images branch not merged)") from None
    from mimax.data.loading import DataLoaderViews

    torch.set_num_threads(args.threads)
    print(machine_info())
    cpu = torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x_a, x_b = (torch.rand(args.batch, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
                for _ in range(2))
    step = our_step(our_method("SimCLR", 16), "bf16", channels_last=True)
    t_train = median_step_time(lambda: step(x_a, x_b), 2, args.steps)
    train_ips = args.batch / t_train
    print(f"training: SimCLR bf16 + channels_last, batch {args.batch}: {t_train:.3f} s/step = {train_ips:.0f} img/s\n")
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    recipe = make_recipe("simclr", "CIFAR10", 32, 3)
    rows = []
    for workers in (1, 2):
        torch.set_num_threads(1)
        loader = DataLoaderViews(SyntheticImages(images, TorchvisionViews(recipe)), args.batch, seed=0, device=cpu,
                                 num_workers=workers)
        rows.append((f"per-image torchvision, {workers} DataLoader worker(s)", images_per_second(loader)))
    batched = BatchedViews(recipe)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        bgen = torch.Generator().manual_seed(0)
        t = median_step_time(lambda b=bgen: batched(images[:args.batch], b), 1, args.steps)
        rows.append((f"batched views on the CPU (--gpu_augment), {threads} thread(s)", args.batch / t))
    print("| pipeline | img/s | ÷ training img/s |")
    print("|---|---|---|")
    for name, ips in rows:
        print(f"| {name} | {ips:.0f} | {ips / train_ips:.2f} |")


if __name__ == "__main__":
    main()
