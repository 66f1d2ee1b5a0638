"""Linear probe vs scikit-learn's LogisticRegression, weighted kNN vs a NumPy loop (small synthetic data)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from image_fixtures import write_class_tree
from PIL import Image
from sklearn.linear_model import LogisticRegression

from conftest import run_mimax
from mimax.errors import DataError
from mimax.evaluation.probe import extract_features, fit_linear_probe, knn_accuracy, linear_probe, standardizer


def blobs(n: int, d: int, k: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes (not linearly separable, so the probe has a unique finite optimum)."""
    gen = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(k, d, generator=torch.Generator().manual_seed(1000))
    y = torch.randint(k, (n,), generator=gen)
    scales = torch.linspace(0.5, 3.0, d)  # unequal feature scales: standardization matters
    return (centers[y] + torch.randn(n, d, generator=gen)) * scales + 2.0, y


@pytest.fixture(scope="module")
def splits():
    xtr, ytr = blobs(400, 12, 4, 1.0, seed=1)
    xte, yte = blobs(300, 12, 4, 1.0, seed=2)
    return xtr, ytr, xte, yte


def test_linear_probe_matches_sklearn_logistic_regression(splits):
    xtr, ytr, xte, yte = splits
    l2 = 1e-3
    mean, std = standardizer(xtr)
    ztr, zte = (xtr - mean) / std, (xte - mean) / std
    weight, bias = fit_linear_probe(ztr.double(), ytr, 4, l2=l2, max_iter=500)
    # sklearn minimizes 0.5 ||W||^2 + C sum_i CE_i  ==  n C (mean CE + ||W||^2 / (2 n C)); same optimum
    # as ours when l2 = 1 / (2 n C).
    ref = LogisticRegression(C=1.0 / (2 * l2 * len(ytr)), tol=1e-12, max_iter=10_000)
    ref.fit(ztr.double().numpy(), ytr.numpy())
    np.testing.assert_allclose(weight.numpy(), ref.coef_, atol=2e-4, rtol=1e-3)
    ours = (zte.double() @ weight.T + bias).numpy()
    theirs = ref.decision_function(zte.double().numpy())
    # logits agree up to a per-row constant (the unpenalized bias is defined up to a shift)
    np.testing.assert_allclose(ours - ours.mean(1, keepdims=True), theirs - theirs.mean(1, keepdims=True), atol=1e-3)
    acc = linear_probe(xtr, ytr, xte, yte, 4, l2=l2)
    assert abs(acc - ref.score(zte.numpy(), yte.numpy())) <= 2 / len(yte)
    assert 0.4 < acc < 1.0  # informative but not trivially separable data


def test_linear_probe_default_budget_reaches_sklearn_accuracy(splits):
    xtr, ytr, xte, yte = splits
    mean, std = standardizer(xtr)
    ref = LogisticRegression(C=1.0 / (2 * 1e-4 * len(ytr)), tol=1e-10, max_iter=10_000)
    ref.fit(((xtr - mean) / std).numpy(), ytr.numpy())
    expected = ref.score(((xte - mean) / std).numpy(), yte.numpy())
    assert abs(linear_probe(xtr, ytr, xte, yte, 4) - expected) <= 3 / len(yte)


def test_linear_probe_is_invariant_to_feature_scale_and_ignores_constant_features(splits):
    xtr, ytr, xte, yte = splits
    base = linear_probe(xtr, ytr, xte, yte, 4)
    assert linear_probe(7.0 * xtr - 3.0, ytr, 7.0 * xte - 3.0, yte, 4) == pytest.approx(base, abs=1 / len(yte))
    const_tr = torch.cat([xtr, torch.full((len(xtr), 1), 5.0)], 1)
    const_te = torch.cat([xte, torch.randn(len(xte), 1)], 1)  # varies on test only: must not matter
    assert linear_probe(const_tr, ytr, const_te, yte, 4) == pytest.approx(base, abs=1 / len(yte))


@pytest.mark.parametrize("scale", [1e-12, 1e-9, 1e-6, 1e15, 1e30])
def test_probe_and_knn_read_the_same_at_any_feature_scale(splits, scale):
    """A backbone whose features are ~1e-9 (e.g. a torchvision model on inputs it was not trained for) read
    chance (0.07 on separable data): the std floor was an absolute 1e-6. kNN's normalization was absolute too."""
    xtr, ytr, xte, yte = splits
    base = linear_probe(xtr, ytr, xte, yte, 4), knn_accuracy(xtr, ytr, xte, yte, 4, k=20, temperature=0.1)
    scaled = (linear_probe(scale * xtr, ytr, scale * xte, yte, 4),
              knn_accuracy(scale * xtr, ytr, scale * xte, yte, 4, k=20, temperature=0.1))
    assert scaled[0] == pytest.approx(base[0], abs=2 / len(yte))
    assert scaled[1] == pytest.approx(base[1], abs=2 / len(yte))


def knn_reference(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, classes: int,
                  k: int, temperature: float) -> float:
    """Wu et al. (2018) weighted kNN, one test point at a time: each class's vote sum_j exp(sim_j / T) over its
    neighbours, compared as its log-sum-exp (the same argmax, and no overflow at small T)."""
    xtr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    correct = 0
    for x, y in zip(xte, yte):
        sims = xtr @ (x / np.linalg.norm(x))
        nearest = np.argsort(-sims, kind="stable")[:k]
        scores = np.full(classes, -np.inf)
        for c in range(classes):
            s = sims[nearest][ytr[nearest] == c] / temperature
            if s.size:
                scores[c] = s.max() + np.log(np.exp(s - s.max()).sum())
        correct += int(np.argmax(scores) == y)
    return correct / len(yte)


@pytest.mark.parametrize("k,temperature,chunk", [(20, 0.07, 1024), (200, 0.5, 37), (1000, 0.1, 64)])
def test_knn_matches_numpy_loop(splits, k, temperature, chunk):
    xtr, ytr, xte, yte = splits
    ours = knn_accuracy(xtr, ytr, xte, yte, 4, k=k, temperature=temperature, chunk=chunk)
    ref = knn_reference(xtr.double().numpy(), ytr.numpy(), xte.double().numpy(), yte.numpy(), 4,
                        min(k, len(ytr)), temperature)
    assert ours == pytest.approx(ref, abs=1 / len(yte))  # at most one float-rounding tie may differ
    assert ours > 0.4


def test_knn_temperature_changes_the_vote():
    # test point: 1 close neighbour of class 0, 2 farther of class 1. Sharp T -> class 0, flat T -> class 1.
    xtr = torch.tensor([[1.0, 0.05], [1.0, 0.6], [1.0, -0.6]])
    ytr = torch.tensor([0, 1, 1])
    xte, yte = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert knn_accuracy(xtr, ytr, xte, yte, 2, k=3, temperature=0.01) == 1.0
    assert knn_accuracy(xtr, ytr, xte, yte, 2, k=3, temperature=10.0) == 0.0


@pytest.mark.parametrize("fn", [linear_probe, knn_accuracy])
def test_probe_rejects_mismatched_inputs(splits, fn):
    xtr, ytr, xte, yte = splits
    with pytest.raises(ValueError, match="labels"):
        fn(xtr, ytr[:-1], xte, yte, 4)
    with pytest.raises(ValueError, match="same d"):
        fn(xtr, ytr, xte[:, :-1], yte, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fn(xtr, ytr, xte, yte, 3)


def test_tensor_datasets_are_extracted_as_a_dataloader_would():
    """In-memory TensorDatasets are sliced into batches instead of going through a DataLoader: the same
    features and labels, bit for bit, including a last partial batch and a tuple-valued ``fn``."""
    from torch.utils.data import Dataset, TensorDataset

    from mimax.evaluation.probe import extract_features

    class Rows(Dataset):  # the same data, not a TensorDataset: DataLoader path
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    torch.manual_seed(0)
    x, y = torch.randn(1030, 7), torch.randint(0, 4, (1030,))
    lin = torch.nn.Linear(7, 5)

    def fn(b):
        h = lin(b)
        return h, h.tanh()

    (h1, z1), y1 = extract_features(fn, TensorDataset(x, y), torch.device("cpu"), batch_size=256)
    (h2, z2), y2 = extract_features(fn, Rows(x, y), torch.device("cpu"), batch_size=256)
    assert torch.equal(h1, h2) and torch.equal(z1, z2) and torch.equal(y1, y2) and h1.shape == (1030, 5)


@pytest.mark.parametrize("temperature", [0.001, 0.005, 0.01])
def test_knn_at_a_small_temperature_matches_the_float64_reference(splits, temperature):
    """exp(sim / T) overflowed float32 for T <= 0.011 (sim / T > 88.7): every class with an infinite vote tied
    and class 0 won (19.8% where the reference reads 84.7% on a trained Digits encoder)."""
    xtr, ytr, xte, yte = splits
    ref = knn_reference(xtr.double().numpy(), ytr.numpy(), xte.double().numpy(), yte.numpy(), 4, 20, temperature)
    assert knn_accuracy(xtr, ytr, xte, yte, 4, k=20, temperature=temperature) == pytest.approx(ref, abs=1 / len(yte))



class _Unreadable(torch.utils.data.Dataset):
    """Image 5 of 12 cannot be decoded (as mimax's folder datasets say it, in a DataLoader worker)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        if i == 5:
            raise DataError("/data/cat/005.png: cannot decode image (image file is truncated); delete or replace it")
        return torch.zeros(3), 0


def test_an_unreadable_image_met_by_a_feature_worker_is_one_line():
    """With --num_workers 2 the evaluation's feature pass printed the worker's whole traceback as the "one line"
    (only the training loader shortened it)."""
    with pytest.raises(DataError) as err:
        extract_features(lambda x: x, _Unreadable(), torch.device("cpu"), batch_size=4, num_workers=2)
    assert str(err.value) == "/data/cat/005.png: cannot decode image (image file is truncated); delete or replace it"


def test_a_run_whose_evaluation_workers_meet_a_corrupt_image_exits_with_its_one_line(tmp_path):
    """A truncated JPEG in val/ (read first by the random-init evaluation's workers, with the default two):
    the one line came, then the process hung for good at exit, its idle workers (which ignore SIGTERM) kept
    alive by the error's traceback. Now it exits 2 at once, leaving nothing behind."""
    write_class_tree(tmp_path / "data" / "train", ["a", "b"], per_class=12)
    write_class_tree(tmp_path / "data" / "val", ["a", "b"], per_class=4)
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (tmp_path / "data" / "val" / "b" / "broken.jpg").write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
    proc = run_mimax(["train", "--dataset", "ImageFolder", "--data_dir", str(tmp_path / "data"), "--epochs", "1",
                      "--resnet_width", "4", "--batch_size", "16", "--num_workers", "2", "--num_threads", "1",
                      "--output_dir", str(tmp_path / "run")], timeout=150)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith(f"mimax: error: {tmp_path / 'data' / 'val' / 'b' / 'broken.jpg'}: cannot "
                                          "decode image") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()
