"""Throughput of the two view implementations (images per second, each image giving two views).

    PYTHONPATH=src python benchmarks/augmentation_throughput.py [--size 32] [--batch 512] [--threads 1]

Per-image: the torchvision v2 pipeline called image by image in this process (one DataLoader worker's
work). Batched: :class:`mimax.data.views.BatchedViews` on a uint8 batch on the CPU. Median of 5 timed
repetitions after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine_info

from mimax.data.views import BatchedViews, TorchvisionViews, make_recipe


def median_seconds(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per_image_count", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    print(f"{args.size} px, batch {args.batch}, {args.threads} thread(s); images/s (two views each)")
    for kind in ("weak", "simclr", "byol"):
        recipe = make_recipe(kind, "CIFAR10" if args.size <= 32 else "ImageNet", args.size, 3)
        batched, gen = BatchedViews(recipe), torch.Generator().manual_seed(0)
        t_batched = median_seconds(lambda b=batched, g=gen: b(images, g))
        per_image = TorchvisionViews(recipe)
        subset = images[:args.per_image_count]
        t_image = median_seconds(lambda f=per_image, xs=subset: [f(x) for x in xs])
        print(f"{kind:7s} batched {args.batch / t_batched:9.0f}   per-image torchvision "
              f"{len(subset) / t_image:7.0f}")


if __name__ == "__main__":
    main()
