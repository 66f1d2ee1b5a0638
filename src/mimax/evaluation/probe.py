"""Linear probe and kNN on frozen, cached features (docs/methods.md §8; protocol in docs/evaluation.md).

Features are extracted once per evaluation (eval mode, no augmentation, no_grad) and cached in memory.

Linear probe: multinomial logistic regression on features standardized with the train split's mean and
std, fitted full-batch with L-BFGS (history 20, strong-Wolfe line search, at most ``max_iter`` = 200
iterations from zero initialization), minimizing ``mean CE + l2 * ||W||_F^2`` with ``l2 = 1e-4`` (the
bias is not penalized). This is the objective of scikit-learn's ``LogisticRegression(C=1 / (2 l2 n))``
(n = train size), and the tests check that both reach the same weights and accuracy. Why our own
rather than scikit-learn's: the same code runs on the training device next to the features (no host
copy of ImageNet-scale feature matrices, GPU speed), and it is deterministic for a given input. The
reported number is top-1 on the test split of this final fit; nothing is selected on the test set.

kNN: the weighted kNN of Wu et al. (2018), as used by solo-learn and DINO: cosine similarity, k = 200,
votes ``exp(sim / T)`` with T = 0.07.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mimax.errors import DataError
from mimax.runtime.signals import leave_preemption_to_the_main_process, stop_iterator_workers, track_workers


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]], dataset: Dataset, device: torch.device,
                     batch_size: int = 512, num_workers: int = 0) -> tuple[Tensor | tuple[Tensor, ...], Tensor]:
    """Apply ``fn`` to every input of a ``(x, y)`` dataset in order; returns fp32 features and labels.
    ``fn`` may return a tuple of feature tensors (e.g. backbone features and embeddings): the features
    are then a tuple of the same length, each its own (n, d_i) matrix."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        # tensors in memory (the Gaussian mixture): the same batches as a DataLoader's, sliced instead of
        # indexed row by row and collated (~55 ms per pass over 6,000 rows, twice per encoder evaluation)
        x_all, y_all = dataset.tensors
        loader = ((x_all[i:i + batch_size], y_all[i:i + batch_size]) for i in range(0, len(dataset), batch_size))
    else:
        loader = track_workers(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                          worker_init_fn=leave_preemption_to_the_main_process))
    feats, labels = [], []
    batches = iter(loader)
    try:
        for x, y in batches:
            out = fn(x.to(device, non_blocking=True))
            feats.append(tuple(o.float() for o in out) if isinstance(out, tuple) else out.float())
            labels.append(y.to(device))
    except DataError as exc:  # an unreadable image, met in a worker: one line, as the training loader says it
        raise DataError.one_line(exc) from None
    finally:
        stop_iterator_workers(batches)  # an interrupted pass: its workers stop now (else the process hung at exit)
        del batches
    if feats and isinstance(feats[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*feats)), torch.cat(labels)
    return torch.cat(feats), torch.cat(labels)


def _check_split(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int) -> None:
    """Features (n, d) with the same d in both splits, integer labels (n,) in [0, num_classes)."""
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (n, d) with the same d, got {tuple(train_x.shape)} and "
                         f"{tuple(test_x.shape)}")
    if train_y.shape != (train_x.shape[0],) or test_y.shape != (test_x.shape[0],):
        raise ValueError(f"labels must be (n,) matching the features, got {tuple(train_y.shape)} for "
                         f"{train_x.shape[0]} train rows and {tuple(test_y.shape)} for {test_x.shape[0]} test rows")
    if train_x.shape[0] < 2:
        raise ValueError("the train split needs at least 2 rows")
    for y in (train_y, test_y):
        if y.dtype not in (torch.int64, torch.int32) or (y.numel() and (y.min() < 0 or y.max() >= num_classes)):
            raise ValueError(f"labels must be integers in [0, {num_classes})")


def standardizer(train_x: Tensor) -> tuple[Tensor, Tensor]:
    """The train split's per-feature mean and std, computed in float64 and returned in ``train_x``'s dtype. The
    std's floor is relative to the feature's magnitude (``1e-6 * max |x_j|``; float32 resolves ~1e-7 of it), so
    only a feature constant up to rounding is held at 0, whatever the features' scale: an absolute floor
    flattened every feature of a backbone whose outputs are ~1e-9 and the probe read chance."""
    x = train_x.double()
    floor = (1e-6 * x.abs().amax(0)).clamp_min(torch.finfo(torch.float64).tiny)
    mean, std = x.mean(0), x.std(0).clamp_min(floor)
    if train_x.dtype != torch.float64:  # the floor must stay representable: tiny float64 stds would read 0
        std = std.clamp_min(torch.finfo(train_x.dtype).tiny)
    return mean.to(train_x.dtype), std.to(train_x.dtype)


def fit_linear_probe(z: Tensor, y: Tensor, num_classes: int, l2: float = 1e-4,
                     max_iter: int = 200) -> tuple[Tensor, Tensor]:
    """``(W, b)`` minimizing ``(1/n) sum_i CE(W z_i + b, y_i) + l2 * ||W||_F^2`` by full-batch L-BFGS
    (zero init, history 20, strong-Wolfe line search, at most ``max_iter`` iterations)."""
    weight = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=z.dtype, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    # The logits class-major, (C, n): the log-softmax then runs along n-long rows, and the product is
    # (C x d) @ (d x n). Row-major (n, C) logits put the log-softmax on n rows of C entries and BLAS on an
    # (n x d) @ (d x C) product with C ~ 10 columns, which took 1.8x as long per closure on the CPU
    # (5,000 x 64 features, 5 classes). Same objective; the sums round in another order.
    z_t, rows = z.T.contiguous(), torch.arange(z.shape[0], device=z.device)

    def closure() -> Tensor:
        opt.zero_grad()
        log_p = torch.addmm(bias[:, None], weight, z_t).log_softmax(0)
        loss = -log_p[y, rows].mean() + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 l2: float = 1e-4, max_iter: int = 200) -> float:
    """Top-1 test accuracy of ``argmax(W z + b)`` with ``(W, b)`` from :func:`fit_linear_probe` on the
    standardized train features ``z = (x - mean_train) / std_train`` (a feature constant on the train
    split keeps weight 0: its gradient is 0 from the zero init on)."""
    _check_split(train_x, train_y, test_x, test_y, num_classes)
    mean, std = standardizer(train_x)
    weight, bias = fit_linear_probe((train_x - mean) / std, train_y, num_classes, l2, max_iter)
    with torch.no_grad():
        return ((test_x - mean) / std @ weight.T + bias).argmax(1).eq(test_y).float().mean().item()


def _unit_rows(x: Tensor) -> Tensor:
    """Each row over its norm, in ``x``'s dtype, after dividing it by its largest magnitude: rows of any scale
    (1e-20 or 1e30) come out unit vectors, where ``F.normalize``'s absolute eps shortens rows below 1e-12 and
    squares overflow float32 above ~1e19. A zero row stays 0."""
    x = x / x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return F.normalize(x, dim=1)


@torch.no_grad()
def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN (Wu et al., 2018): cosine similarity, the k nearest train points vote for their
    class with weight ``exp(sim / T)``; top-1 accuracy of the class with the largest total vote."""
    _check_split(train_x, train_y, test_x, test_y, num_classes)
    if k < 1 or temperature <= 0:
        raise ValueError(f"kNN needs k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    k = min(k, train_x.shape[0])
    tr = _unit_rows(train_x)
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        te = _unit_rows(test_x[start:start + chunk])
        sim, idx = (te @ tr.T).topk(k, dim=1)
        votes = torch.zeros(te.shape[0], num_classes, device=te.device)
        # exp((s - s_max) / T): the same argmax as exp(s / T), which overflows float32 once s / T > 88.7
        # (T <= 0.011 on near-duplicates) and turned the vote into a tie won by class 0
        votes.scatter_add_(1, train_y[idx].long(), ((sim - sim[:, :1]) / temperature).exp())
        correct += votes.argmax(1).eq(test_y[start:start + chunk]).sum().item()
    return correct / test_x.shape[0]
