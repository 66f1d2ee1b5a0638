"""The view loader training uses, built by ``build_data`` from fixtures in their real on-disk formats:
views independent of the number of ranks (gloo) and workers, one rank's share per step, the crop
region of image files on both paths (training and MI-monitor views)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from image_fixtures import write_cifar, write_class_tree
from PIL import Image

from mimax.config import resolve
from mimax.data import build_data
from mimax.data.views import normalization

CPU = torch.device("cpu")
SEED = 7
SETTINGS = [(data, gpu, workers) for data in ("files", "memory") for gpu in (False, True) for workers in (0, 2)]


def _cfg(root: Path, data: str, gpu_augment: bool, workers: int):
    common = dict(model_name="SimCLR", batch_size=8, augmentation=True, gpu_augment=gpu_augment,
                  num_workers=workers, monitor_size=4, resnet_width=8)
    if data == "files":  # JPEGs of different sizes, decoded in the workers
        return resolve({**common, "dataset": "Folder", "data_dir": str(root / "jpg"), "image_size": 16})
    return resolve({**common, "dataset": "CIFAR10", "data_dir": str(root / "cifar")})


def _write_data(root: Path) -> None:
    for i, size in enumerate([(24, 18), (18, 26)]):
        write_class_tree(root / "jpg", [f"c{i}"], per_class=8, seed=i, ext=".jpg", size=size)
    write_cifar(root / "cifar", per_batch=4)  # 20 training images in memory


def _epochs(loader, epochs=(1, 2)) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    return {e: [(a.clone(), b.clone()) for a, b in loader.epoch(e)] for e in epochs}


def _rank_main(rank: int, root: str, world: int) -> None:
    """One of ``world`` gloo processes: this rank's batches of epochs 1 and 2 of every setting, the
    epochs drawn one after the other from the same loader (persistent workers)."""
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=world)
    try:
        from mimax.runtime import distributed

        out = {}
        for setting in SETTINGS:
            data = build_data(_cfg(Path(root), *setting), CPU, SEED, distributed.rank(), distributed.world_size())
            out[setting] = _epochs(data.train_views)
        torch.save(out, f"{root}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_load_their_halves_of_the_single_process_batches(tmp_path):
    """W = 2 (gloo) with 0 and 2 workers: each rank yields B/2 pairs per step, and rank 0's rows followed
    by rank 1's are bitwise the single-process batch (0 workers, a fresh loader per epoch), on both paths,
    for image files and in-memory images. So the views of an image depend on neither ranks, workers, nor
    worker persistence."""
    _write_data(tmp_path)
    torch.multiprocessing.start_processes(_rank_main, args=(str(tmp_path), 2), nprocs=2, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for setting in SETTINGS:
        data, gpu, workers = setting
        if workers:
            continue  # the single-process reference: 0 workers
        reference = {}
        for epoch in (1, 2):
            single = build_data(_cfg(tmp_path, *setting), CPU, SEED).train_views
            whole = reference[epoch] = _epochs(single, (epoch,))[epoch]
            assert len(whole) == 2
            for w in (0, 2):
                parts = [ranks[r][(data, gpu, w)][epoch] for r in range(2)]
                assert len(parts[0]) == len(parts[1]) == len(whole), (setting, w)
                for k, (x_a, x_b) in enumerate(whole):
                    for v, full in enumerate((x_a, x_b)):
                        assert parts[0][k][v].shape[0] == parts[1][k][v].shape[0] == 4
                        assert torch.equal(torch.cat([parts[0][k][v], parts[1][k][v]]), full), \
                            f"{data} gpu_augment={gpu} workers={w} epoch {epoch} step {k} view {v}"
        other_seed = next(iter(build_data(_cfg(tmp_path, *setting), CPU, SEED + 1).train_views.epoch(1)))
        for got in (reference[2][0], other_seed):  # another epoch or seed: other images or other views
            assert not torch.equal(got[0], reference[1][0][0])
        assert not torch.equal(reference[1][0][0], reference[1][0][1])  # two different views


def test_seeds_are_derived_by_splitmix64():
    from mimax import seeding

    assert seeding._splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's first output from state 0 (Steele et al.)
    seeds = {seeding.sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(200)}
    assert len(seeds) == 1800 and all(0 <= x < 2**63 for x in seeds)
    assert seeding.step_seed(1, 2, 3) != seeding.sample_seed(1, 2, 3)


# --- the region a crop can draw from, on a non-square photo ---------------------------------------

WIDTH, HEIGHT = 160, 120


def _ramp_photo(path: Path) -> None:
    """Channel 0 encodes x (0..W-1 -> 0..255), channel 1 encodes y, channel 2 is constant."""
    x = np.round(np.arange(WIDTH) * 255 / (WIDTH - 1))
    y = np.round(np.arange(HEIGHT) * 255 / (HEIGHT - 1))
    pixels = np.stack([np.broadcast_to(x, (HEIGHT, WIDTH)), np.broadcast_to(y[:, None], (HEIGHT, WIDTH)),
                       np.full((HEIGHT, WIDTH), 128)], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _extent(views: list[torch.Tensor]) -> tuple[float, float, float, float]:
    """(x min, x max, y min, y max) in photo pixels over every pixel of the (weak-recipe) views."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization("Folder"))
    x = torch.cat(views) * std + mean
    xs, ys = x[:, 0] * (WIDTH - 1), x[:, 1] * (HEIGHT - 1)
    return xs.min().item(), xs.max().item(), ys.min().item(), ys.max().item()


@pytest.mark.parametrize("gpu_augment", [False, True])
def test_crops_of_an_image_file_reach_the_whole_shorter_side_square(tmp_path, gpu_augment):
    """Training and monitor views of a 160x120 photo (crop + flip only) read pixels from the whole central
    120x120 square, up to every edge; the per-image path also reaches the photo's sides, the batched path
    stays inside the square it decodes. (An evaluation crop applied to training views would stop them
    7.5 px short of the top and bottom edges.)"""
    for i in range(32):
        _ramp_photo(tmp_path / f"{i:02d}.png")
    cfg = resolve({"model_name": "SimCLR", "dataset": "Folder", "data_dir": str(tmp_path), "image_size": 32,
                   "batch_size": 16, "gpu_augment": gpu_augment, "monitor_size": 32, "num_workers": 0})
    data = build_data(cfg, CPU, 0)
    train = [v for e in (1, 2) for pair in data.train_views.epoch(e) for v in pair]
    square = ((WIDTH - HEIGHT) / 2, (WIDTH + HEIGHT) / 2 - 1, 0, HEIGHT - 1)
    tol = 3.0  # photo pixels: the batched path reads a 37 px square of the 120 px one (~3.2 px per pixel)
    for name, views in (("training", train), ("monitor", list(data.monitor_views))):
        x0, x1, y0, y1 = _extent(views)
        assert y0 <= tol and y1 >= HEIGHT - 1 - tol, f"{name} views: rows {y0:.1f}..{y1:.1f} of 0..{HEIGHT - 1}"
        assert x0 <= square[0] + tol and x1 >= square[1] - tol, f"{name} views: columns {x0:.1f}..{x1:.1f}"
        if gpu_augment:
            assert x0 >= square[0] - tol and x1 <= square[1] + tol, f"{name} views left the square"
        else:
            assert x0 <= tol and x1 >= WIDTH - 1 - tol, f"{name} views: columns {x0:.1f}..{x1:.1f}"
