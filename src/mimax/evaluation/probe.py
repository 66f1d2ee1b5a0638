"""Linear probe and kNN on frozen, cached features (METHODS.md §8).

Features are extracted once per evaluation (eval mode, no augmentation, no_grad) and cached in memory.
The linear probe is multinomial logistic regression on standardized features, fitted full-batch with
L-BFGS (strong-Wolfe line search, fixed iteration budget, L2 penalty). Why our own rather than
scikit-learn's ``LogisticRegression``: the same code runs on the GPU next to the features, it is
deterministic for a given input, and it needs no host copy of ImageNet-scale feature matrices. The
reported number is top-1 on the test split of this final fit; nothing is selected on the test set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor], dataset: Dataset, device: torch.device,
                     batch_size: int = 512, num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every input of a ``(x, y)`` dataset in order; returns fp32 features and labels."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, labels = [], []
    for x, y in loader:
        feats.append(fn(x.to(device, non_blocking=True)).float())
        labels.append(y.to(device))
    return torch.cat(feats), torch.cat(labels)


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 l2: float = 1e-4, max_iter: int = 200) -> float:
    """Top-1 test accuracy of ``argmax(W z + b)``, (W, b) minimizing
    ``CE(W z + b, y) + l2 * ||W||^2`` over the standardized train features z."""
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    ztr, zte = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(num_classes, ztr.shape[1], device=ztr.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=ztr.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(ztr @ weight.T + bias, train_y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (zte @ weight.T + bias).argmax(1).eq(test_y).float().mean().item()


@torch.no_grad()
def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN (Wu et al., 2018): cosine similarity, the k nearest train points vote for their
    class with weight ``exp(sim / T)``; top-1 accuracy of the class with the largest total vote."""
    k = min(k, train_x.shape[0])
    tr = F.normalize(train_x, dim=1)
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        te = F.normalize(test_x[start:start + chunk], dim=1)
        sim, idx = (te @ tr.T).topk(k, dim=1)
        votes = torch.zeros(te.shape[0], num_classes, device=te.device)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += votes.argmax(1).eq(test_y[start:start + chunk]).sum().item()
    return correct / test_x.shape[0]
