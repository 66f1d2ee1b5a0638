"""Image datasets read from fixtures written here in each real on-disk format, through the code users run
(``config.resolve`` validates the location, ``build_data`` loads it); and every bad-data case."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import (
    idx_bytes,
    py2_pickle,
    write_cifar,
    write_class_tree,
    write_idx_set,
    write_image,
    write_tar,
    write_tiny_imagenet,
)

from mimax.config import notes, resolve
from mimax.data import build_data
from mimax.data.folders import image_files
from mimax.data.imagenet100 import read_class_list
from mimax.data.views import normalization
from mimax.errors import DataError

CPU = torch.device("cpu")


def make_cfg(dataset: str, data_dir: Path | str | None, **kw):
    values = dict(model_name="SimCLR", dataset=dataset, batch_size=4, num_workers=0, resnet_width=8,
                  monitor_size=6, epochs=2, warmup_epochs=0)
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    values.update(kw)
    return resolve(values)


def load(dataset: str, data_dir, **kw):
    return build_data(make_cfg(dataset, data_dir, **kw), CPU, 0)


def stored_images(dataset) -> torch.Tensor:
    return dataset.split.images


# --- CIFAR ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("extracted", [False, True])
def test_cifar10_archive_and_folder_hold_the_pickled_images(tmp_path, extracted):
    path, batches = write_cifar(tmp_path, extracted=extracted)
    data = load("CIFAR10", tmp_path)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    want = np.concatenate([b["data"] for b in train]).reshape(-1, 3, 32, 32)
    assert torch.equal(stored_images(data.probe_train), torch.from_numpy(want))
    assert data.probe_train.split.labels.tolist() == sum((b["labels"] for b in train), [])
    assert data.probe_test.split.labels.tolist() == batches["test_batch"]["labels"]
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)
    x, y = data.probe_test[3]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in normalization("CIFAR10"))
    raw = torch.from_numpy(batches["test_batch"]["data"][3].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(x, (raw - mean) / std) and y == batches["test_batch"]["labels"][3]
    a, b = data.monitor_views
    assert a.shape == b.shape == (6, 3, 32, 32) and not torch.equal(a, b)
    x_a, x_b = next(iter(data.train_views.epoch(1)))
    assert x_a.shape == (4, 3, 32, 32) and len(data.train_views) == 60 // 4


def test_cifar_archive_repacked_with_dot_slash_member_names(tmp_path):
    # `tar czf cifar-10-python.tar.gz ./cifar-10-batches-py` names members "./cifar-10-batches-py/...": the
    # archive was refused as "wrong archive, missing data_batch_1, ..." though every batch was there
    folder, batches = write_cifar(tmp_path / "x", extracted=True)
    (tmp_path / "y").mkdir()
    write_tar(tmp_path / "y" / "cifar-10-python.tar.gz",
              {f"./cifar-10-batches-py/{f.name}": f.read_bytes() for f in folder.iterdir()})
    data = load("CIFAR10", tmp_path / "y")
    assert data.probe_test.split.labels.tolist() == batches["test_batch"]["labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    _, batches = write_cifar(tmp_path, "CIFAR100")
    data = load("CIFAR100", tmp_path / "cifar-100-python.tar.gz")
    assert data.num_classes == 100
    assert data.probe_train.split.labels.tolist() == batches["train"]["fine_labels"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_re_pickled_by_python_3_are_read(tmp_path, protocol):
    # protocol 2 stores bytes through _codecs.encode, protocol 5 arrays through numpy's _frombuffer, and numpy
    # integer labels through multiarray.scalar: each was refused as "not a CIFAR python batch file"
    rng = np.random.default_rng(protocol)
    batches = {n: {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                   "labels": [np.int64(v) for v in rng.integers(0, 10, 4)]}
               for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    blobs = {n: pickle.dumps(b, protocol=protocol) for n, b in batches.items()}
    write_cifar(tmp_path, extracted=True, override=blobs)
    data = load("CIFAR10", tmp_path, batch_size=4)
    assert data.probe_test.split.labels.tolist() == [int(v) for v in batches["test_batch"]["labels"]]
    want = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal(stored_images(data.probe_train), torch.from_numpy(want))


class _WritesAFile:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_creates_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = pickle.dumps({"data": _WritesAFile(str(target)), "labels": []}, protocol=2)
    control = tmp_path / "control.txt"  # the same payload does create a file with the plain unpickler
    pickle.loads(pickle.dumps(_WritesAFile(str(control)), protocol=2)).close()
    assert control.exists()
    write_cifar(tmp_path / "d", override={"data_batch_3": evil})
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load .*open"):
        load("CIFAR10", tmp_path / "d")
    assert not target.exists()


@pytest.mark.parametrize("bad_name", ["../escape.txt", "/tmp/absolute.txt", "cifar-10-batches-py/../../up"])
def test_archive_with_escaping_members_is_refused(tmp_path, bad_name):
    files = {f"cifar-10-batches-py/{n}": py2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
             for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    files[bad_name] = b"x"
    (tmp_path / "d").mkdir()
    write_tar(tmp_path / "d" / "cifar-10-python.tar.gz", files)
    with pytest.raises(DataError, match="outside its folder"):
        load("CIFAR10", tmp_path / "d")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "up").exists()


def test_archive_with_link_member_is_refused(tmp_path):
    files = {f"cifar-10-batches-py/data_batch_{i}": b"" for i in range(1, 5)}
    files["cifar-10-batches-py/test_batch"] = b""
    (tmp_path / "d").mkdir()
    write_tar(tmp_path / "d" / "cifar-10-python.tar.gz", files,
              links={"cifar-10-batches-py/data_batch_5": "/etc/passwd"})
    with pytest.raises(DataError, match="link member"):
        load("CIFAR10", tmp_path / "d")


def test_wrong_archive_and_non_archive(tmp_path):
    (tmp_path / "a").mkdir()
    write_tar(tmp_path / "a" / "cifar-10-python.tar.gz", {"other/readme.txt": b"hello"})
    with pytest.raises(DataError, match="wrong archive, missing data_batch_1"):
        load("CIFAR10", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cifar-10-python.tar.gz").write_bytes(b"not a tar file at all")
    with pytest.raises(DataError, match="not a readable tar archive"):
        load("CIFAR10", tmp_path / "b")
    write_cifar(tmp_path / "c", "CIFAR100")
    with pytest.raises(DataError, match="no CIFAR10 data found"):  # a CIFAR-100 archive given for CIFAR-10
        make_cfg("CIFAR10", tmp_path / "c")


def test_cifar_label_count_mismatch(tmp_path):
    bad = py2_pickle({"data": np.zeros((5, 3072), np.uint8), "labels": [0, 1, 2]})
    write_cifar(tmp_path, override={"test_batch": bad})
    with pytest.raises(DataError, match="test_batch: 5 images but 3 labels"):
        load("CIFAR10", tmp_path)


def test_cifar_labels_that_are_not_integers_or_an_empty_split_are_one_line(tmp_path):
    """Float labels (3.9) were truncated to 3 silently, string labels and an empty test batch were tracebacks."""
    for name, labels in (("a", [3.9] * 5), ("b", ["cat"] * 5)):
        write_cifar(tmp_path / name, override={"test_batch": py2_pickle({"data": np.zeros((5, 3072), np.uint8),
                                                                          "labels": labels})})
        with pytest.raises(DataError, match="test_batch: 'labels' must be a list of integer labels, got"):
            load("CIFAR10", tmp_path / name)
    write_cifar(tmp_path / "c", override={"test_batch": py2_pickle({"data": np.zeros((0, 3072), np.uint8),
                                                                    "labels": []})})
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: the test batches hold no images"):
        load("CIFAR10", tmp_path / "c")


def test_cifar_download_over_an_archive_of_another_md5_is_refused(tmp_path):
    """docs/data.md: a file with another MD5 than torchvision's is refused before anything is fetched; the CIFAR
    archive was used as it stood (MNIST's files were checked). Offline: the check comes before any request."""
    archive, _ = write_cifar(tmp_path)
    before = archive.read_bytes()
    with pytest.raises(DataError, match=f"--download: {archive} exists but is not the file https://.* serves "
                                        r"\(its MD5 differs"):
        load("CIFAR10", tmp_path, download=True)
    assert archive.read_bytes() == before


def test_missing_data_dir_fails_at_validation(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: no CIFAR10 data found"):
        make_cfg("CIFAR10", tmp_path / "nope")
    with pytest.raises(DataError, match="needs --data_dir"):
        make_cfg("CIFAR10", None)


# --- IDX (MNIST / Fashion-MNIST) ------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dataset", ["FashionMNIST", "MNIST"])
def test_idx_files_gzipped_or_raw(tmp_path, gz, dataset):
    arrays = write_idx_set(tmp_path, gz=gz)
    data = load(dataset, tmp_path)
    assert torch.equal(stored_images(data.probe_train)[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.probe_test.split.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10


def test_idx_bad_files(tmp_path):
    arrays = write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["train-labels-idx1-ubyte"][:-3]))
    with pytest.raises(DataError, match="40 images but train-labels-idx1-ubyte has 37 labels"):
        load("MNIST", tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="bad magic number"):
        load("MNIST", tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["train-labels-idx1-ubyte"])[:-5])
    with pytest.raises(DataError, match="IDX header says"):
        load("MNIST", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        make_cfg("MNIST", tmp_path)
    (tmp_path / "bad.gz").write_bytes(b"garbage")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02"))
    with pytest.raises(DataError):
        load("MNIST", tmp_path)


# --- TinyImageNet ----------------------------------------------------------------------------------

def test_tiny_imagenet_tree(tmp_path):
    wnids = ["n01443537", "n01629819", "n01641577"]
    root = write_tiny_imagenet(tmp_path, wnids)
    for data_dir in (tmp_path, root):  # the parent or the tiny-imagenet-200 folder itself
        data = load("TinyImageNet", data_dir)
        assert data.num_classes == 3 and data.input_shape == (3, 64, 64)
        assert data.probe_train.split.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
        assert data.probe_test.split.labels.tolist() == [k % 3 for k in range(6)]
    x, _ = data.probe_train[0]  # a grayscale JPEG comes out as 3 channels
    assert x.shape == (3, 64, 64)


def test_tiny_imagenet_bad_trees(tmp_path):
    wnids = ["n01443537", "n01629819"]
    root = write_tiny_imagenet(tmp_path, wnids)
    write_image(root / "val" / "images" / "stray.JPEG", np.random.default_rng(0), (64, 64))
    with pytest.raises(DataError, match=r"1 image\(s\) not annotated in val_annotations.txt \(e.g. stray.JPEG\)"):
        load("TinyImageNet", tmp_path)
    (root / "val" / "images" / "stray.JPEG").unlink()
    # an image annotated twice used to pass the count check in place of one never annotated (a wrong test set)
    ann = root / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    ann.write_text("\n".join(lines[:-1] + [lines[0].replace(wnids[0], wnids[1])]) + "\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:4: val_0.JPEG is annotated again \(first on line 1\)"):
        load("TinyImageNet", tmp_path)
    ann.write_text("\n".join(lines) + "\n")
    (root / "val" / "images" / "val_0.JPEG").unlink()
    with pytest.raises(DataError, match="annotated image .*val_0.JPEG does not exist"):
        load("TinyImageNet", tmp_path)
    for f in (root / "train" / wnids[1] / "images").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=f"{wnids[1]}/images: empty class folder"):
        load("TinyImageNet", tmp_path)
    (root / "wnids.txt").unlink()
    with pytest.raises(DataError, match="missing wnids.txt"):
        make_cfg("TinyImageNet", tmp_path)


def test_tiny_imagenet_text_files_and_annotations_at_their_edges(tmp_path):
    """A UTF-16 wnids.txt was a UnicodeDecodeError traceback, a BOM (Notepad) became part of the first wnid,
    val_annotations.txt as a folder read "cannot write ... free space", an annotation `../../train/...` put a
    training image in the test split, and an empty annotation file crashed the first evaluation."""
    wnids = ["n01443537", "n01629819"]
    root = write_tiny_imagenet(tmp_path, wnids)
    (root / "wnids.txt").write_bytes("\n".join(wnids).encode("utf-16"))
    with pytest.raises(DataError, match=f"{root / 'wnids.txt'}: not UTF-8 text"):
        load("TinyImageNet", tmp_path)
    (root / "wnids.txt").write_bytes("\n".join(wnids).encode("utf-8-sig"))
    assert load("TinyImageNet", tmp_path).probe_train.split.labels.tolist() == [0] * 4 + [1] * 4
    ann = root / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    leak = lines[0].replace("val_0.JPEG", f"../../train/{wnids[0]}/images/{wnids[0]}_1.JPEG")
    ann.write_text("\n".join([leak, *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=f"val_annotations.txt:1: '../../train/{wnids[0]}/images/{wnids[0]}_1.JPEG' "
                                        "is not a file name in val/images"):
        load("TinyImageNet", tmp_path)
    for f in (root / "val" / "images").iterdir():
        f.unlink()
    ann.write_text("")
    with pytest.raises(DataError, match="val_annotations.txt: annotates no image"):
        load("TinyImageNet", tmp_path)
    ann.unlink()
    ann.mkdir()
    with pytest.raises(DataError, match="val_annotations.txt: is a directory, not a file"):
        load("TinyImageNet", tmp_path)


def test_a_class_list_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "list.txt").write_bytes("n01440764\nn01443537\n".encode("utf-16"))  # PowerShell 5's `>`
    with pytest.raises(DataError, match="list.txt: not UTF-8 text"):
        read_class_list(str(tmp_path / "list.txt"))
    (tmp_path / "list.txt").write_bytes("n01440764\nn01443537\n".encode("utf-8-sig"))
    assert read_class_list(str(tmp_path / "list.txt")) == ["n01440764", "n01443537"]


# --- ImageNet-100 ----------------------------------------------------------------------------------

def test_packaged_imagenet100_class_list():
    wnids = read_class_list(None)
    assert len(wnids) == 100 == len(set(wnids)) and all(w.startswith("n") and len(w) == 9 for w in wnids)


def test_imagenet_root_filtered_by_class_list(tmp_path):
    all_classes = ["n01440764", "n01443537", "n01484850", "n01491361"]
    for split in ("train", "val"):
        write_class_tree(tmp_path / split, all_classes, per_class=2 if split == "val" else 3, ext=".JPEG")
    class_list = tmp_path / "classes.txt"
    class_list.write_text("# two classes\nn01484850\nn01440764\n")
    data = load("ImageNet100", tmp_path, class_list=str(class_list), image_size=16)
    assert data.num_classes == 2 and data.input_shape == (3, 16, 16)
    assert [p.parent.name for p in data.probe_train.split.files] == ["n01484850"] * 3 + ["n01440764"] * 3
    assert data.probe_test.split.labels.tolist() == [0, 0, 1, 1]
    assert data.probe_test[0][0].shape == (3, 16, 16)
    with pytest.raises(DataError, match="100 listed classes are missing"):
        make_cfg("ImageNet100", tmp_path)  # the packaged CMC list: these fake classes are not it
    (tmp_path / "missing.txt").write_text("n01440764\nn09999999\n")
    with pytest.raises(DataError, match=r"train: 1 of the 2 listed classes are missing \(e.g. n09999999\)"):
        make_cfg("ImageNet100", tmp_path, class_list=str(tmp_path / "missing.txt"))


# --- ImageFolder / Folder --------------------------------------------------------------------------

def test_image_folder_train_val_layout(tmp_path):
    pixels = write_class_tree(tmp_path / "train", ["cat", "dog"], per_class=3)
    write_class_tree(tmp_path / "val", ["cat", "dog"], per_class=2, seed=1)
    data = load("ImageFolder", tmp_path, image_size=16)
    assert data.num_classes == 2 and data.probe_train.split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(data.probe_test) == 4
    decoded = data.probe_train.split.raw(4)  # dog_1.png, lossless
    assert torch.equal(decoded, torch.from_numpy(pixels["dog"][1]).permute(2, 0, 1))


def test_image_folder_single_tree_holds_out_a_fixed_fraction(tmp_path):
    write_class_tree(tmp_path, ["a", "b", "c"], per_class=20)
    first = load("ImageFolder", tmp_path, image_size=16)
    again = load("ImageFolder", tmp_path, image_size=16, seed=5)
    # 60 images (< 1000): a fifth of each class is held out (a tenth from 1000 images on)
    assert len(first.probe_test) == 12 and len(first.probe_train) == 48
    assert first.probe_test.split.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert first.probe_test.split.files == again.probe_test.split.files
    assert not set(first.probe_test.split.files) & set(first.probe_train.split.files)


def test_image_folder_bad_trees(tmp_path):
    write_class_tree(tmp_path / "train", ["cat", "dog"], per_class=3)
    with pytest.raises(DataError, match="has train/ but no val/ or test/"):
        make_cfg("ImageFolder", tmp_path)
    write_class_tree(tmp_path / "val", ["cat", "cow"], per_class=2)
    with pytest.raises(DataError, match="class folders differ"):
        load("ImageFolder", tmp_path, image_size=16)
    (tmp_path / "val" / "cow").rename(tmp_path / "val" / "dog")
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: corrupt or unreadable image file"):
        load("ImageFolder", tmp_path, image_size=16)
    (tmp_path / "train" / "dog" / "broken.png").unlink()
    for f in (tmp_path / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="train/dog: empty class folder"):
        load("ImageFolder", tmp_path, image_size=16)


def test_image_folder_follows_symlinked_folders_and_skips_hidden_and_thumbnail_folders(tmp_path):
    # symlinked sub-folders were not followed (their images silently left out, unlike torchvision's
    # ImageFolder), hidden and @eaDir thumbnail folders were read as images of the class, GIFs skipped
    root = tmp_path / "data"
    write_class_tree(root, ["a", "b"], per_class=3)
    write_class_tree(tmp_path / "elsewhere", ["more"], per_class=2, seed=3)
    (root / "a" / "more").symlink_to(tmp_path / "elsewhere" / "more", target_is_directory=True)
    rng = np.random.default_rng(5)
    for hidden in (".thumbnails", "@eaDir", "__MACOSX"):
        write_image(root / "a" / hidden / "t.png", rng)
    (root / "a" / "._a_0.png").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: stopped the run as "corrupt"
    from PIL import Image
    Image.fromarray(rng.integers(0, 255, (16, 20), dtype=np.uint8)).convert("P").save(root / "b" / "anim.gif")
    files = image_files(root / "a", recursive=True)
    assert [f.relative_to(root).as_posix() for f in files] == [
        "a/a_0.png", "a/a_1.png", "a/a_2.png", "a/more/more_0.png", "a/more/more_1.png"]
    assert (root / "b" / "anim.gif") in image_files(root / "b", recursive=True)
    data = load("ImageFolder", root, image_size=16)
    assert len(data.probe_train) + len(data.probe_test) == 9


@pytest.mark.parametrize("layout", ["two_links", "real_and_link", "link_inside", "test_links_train"])
def test_image_folder_refuses_one_folder_reached_from_two_classes(tmp_path, layout):
    """The folders seen were remembered per class folder only: two class folders linked to one folder, a class
    plus a link to it, a link inside one class to another class, or a val/ class linked to its train/ class gave
    one image two labels (or put it in both splits) with exit 0. The docs call a folder reached twice an error."""
    root = tmp_path / "data"
    write_class_tree(root / "store", ["fish", "dog"], per_class=3)
    train = root / "train" if layout == "test_links_train" else root / "classes"
    train.mkdir(parents=True)
    if layout == "two_links":
        (train / "fishA").symlink_to(root / "store" / "fish", target_is_directory=True)
        (train / "fishB").symlink_to(root / "store" / "fish", target_is_directory=True)
    elif layout == "real_and_link":
        (root / "store" / "fish").rename(train / "cat")
        (train / "cat2").symlink_to(train / "cat", target_is_directory=True)
    elif layout == "link_inside":
        (root / "store" / "fish").rename(train / "cat")
        (root / "store" / "dog").rename(train / "dog")
        (train / "cat" / "more").symlink_to(train / "dog", target_is_directory=True)
    else:
        for name in ("fish", "dog"):
            (root / "store" / name).rename(train / name)
        (root / "val").mkdir()
        (root / "val" / "fish").symlink_to(train / "fish", target_is_directory=True)
        write_class_tree(root / "val", ["dog"], per_class=2)
    data_dir = root if layout == "test_links_train" else train
    with pytest.raises(DataError, match=r"the same folder as .* \(through a symlink\)"):
        load("ImageFolder", data_dir, image_size=16)


def test_image_folder_notes_loose_images_and_a_single_class(tmp_path):
    write_class_tree(tmp_path, ["only"], per_class=6)
    write_image(tmp_path / "stray.png", np.random.default_rng(0))
    notes_ = load("ImageFolder", tmp_path, image_size=16).extras["notes"]
    assert any("1 image file(s) directly in" in n and "stray.png" in n for n in notes_), notes_
    assert any("one class folder (only)" in n and "100% accurate by construction" in n for n in notes_), notes_


def test_image_folder_broken_links_loops_and_unreadable_formats_are_errors(tmp_path):
    root = tmp_path / "data"
    write_class_tree(root, ["a", "b"], per_class=3)
    (root / "c").symlink_to(tmp_path / "moved_away", target_is_directory=True)  # was: class c silently gone
    with pytest.raises(DataError, match=r"data/c: broken symlink"):
        load("ImageFolder", root, image_size=16)
    (root / "c").unlink()
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    with pytest.raises(DataError, match=r"a/loop: the same folder as .*a \(through a symlink\)"):
        image_files(root / "a", recursive=True)
    (root / "a" / "loop").unlink()
    (root / "a" / "gone").symlink_to(tmp_path / "nothing")  # a dangling link may have been a folder of images
    with pytest.raises(DataError, match=r"a/gone: broken symlink"):
        image_files(root / "a", recursive=True)
    (root / "a" / "gone").unlink()
    (root / "b" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(DataError, match=r"IMG_0001.HEIC: a HEIC image, which PIL cannot decode"):
        image_files(root / "b", recursive=True)


def test_decoding_applies_exif_orientation_and_scales_16_bit_grey(tmp_path):
    from PIL import Image, ImageOps

    from mimax.data.images import decode_image

    left_red = np.zeros((20, 40, 3), np.uint8)
    left_red[:, :20] = (255, 0, 0)
    left_red[:, 20:] = (0, 0, 255)
    for orientation in range(1, 9):  # every EXIF orientation, as an image viewer shows it
        im = Image.fromarray(left_red)
        exif = im.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"  # lossless, so the pixels compare exactly
        im.save(path, exif=exif.tobytes())
        shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        assert np.array_equal(decode_image(path, 3).permute(1, 2, 0).numpy(), shown), orientation
    assert decode_image(tmp_path / "o6.png", 3).shape == (3, 40, 20)  # "rotate 90": portrait
    # 16-bit grey: PIL's convert clipped everything above 255 to white (near-black 300 read as 255)
    ramp = np.array([[0, 300, 257 * 100, 65535]], np.uint16)
    for suffix in (".png", ".tif"):
        Image.fromarray(ramp).save(tmp_path / f"g16{suffix}")
        assert decode_image(tmp_path / f"g16{suffix}", 1)[0, 0].tolist() == [0, 1, 100, 255]
        assert decode_image(tmp_path / f"g16{suffix}", 3)[:, 0, 1].tolist() == [1, 1, 1]
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DataError, match=r"float.tif: a 32-bit floating-point image \(PIL mode F\)"):
        decode_image(tmp_path / "float.tif", 3)
    # 32-bit integers (mode I) were scaled as 16-bit and clipped: a 0..76.8M ramp read 99.9% white, silently
    Image.fromarray((np.arange(48).reshape(6, 8) * 1_600_000).astype(np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(DataError, match=r"i32.tif: a 32-bit integer image \(PIL mode I\) with values outside "
                                        r"0..65535"):
        decode_image(tmp_path / "i32.tif", 1)
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "i32_in_range.tif")  # values of 16 bits
    assert decode_image(tmp_path / "i32_in_range.tif", 1)[0, 0].tolist() == [0, 255]


@pytest.mark.parametrize("workers", [0, 1])
def test_file_that_fails_to_decode_names_the_file(tmp_path, workers):
    write_class_tree(tmp_path, ["a", "b"], per_class=4, ext=".jpg", size=(24, 24))
    data = load("ImageFolder", tmp_path, image_size=16, num_workers=workers, batch_size=2)
    victim = data.probe_train.split.files[2]  # a training image
    blob = victim.read_bytes()
    victim.write_bytes(blob[:len(blob) * 9 // 10])  # header intact (passes the pre-check), pixels truncated
    with pytest.raises(DataError) as err:
        for _ in data.train_views.epoch(1):
            pass
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(victim)) and "cannot decode image" in message


def test_flat_folder_without_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(7):
        write_image(tmp_path / ("sub" if i % 2 else "") / f"img{i}.png", rng)
    cfg = make_cfg("Folder", tmp_path, no_labels=True, image_size=16)
    data = build_data(cfg, CPU, 0)
    assert data.probe_train is None and data.probe_test is None and data.num_classes is None
    assert data.monitor_views[0].shape == (6, 3, 16, 16)
    assert capsys.readouterr().out == ""  # the data layer prints nothing; `mimax train` prints the note
    assert any("linear probe and kNN evaluation are skipped" in line for line in notes(cfg))
    assert make_cfg("Folder", tmp_path, image_size=16).no_labels  # --dataset Folder implies --no_labels
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files found"):
        load("Folder", tmp_path / "empty", no_labels=True)


# --- shared behaviour ------------------------------------------------------------------------------

def test_digits_split_and_normalization_constants():
    data = load("Digits", None)
    train = data.probe_train.split.images.float() / 255
    assert len(data.probe_train) + len(data.probe_test) == 1797 and data.input_shape == (1, 8, 8)
    everything = torch.cat([train, data.probe_test.split.images.float() / 255])
    mean, std = normalization("Digits")
    assert abs(everything.mean().item() - mean[0]) < 1e-3 and abs(everything.std().item() - std[0]) < 1e-3


def test_subsets_are_fixed_and_shared_across_seeds(tmp_path):
    write_idx_set(tmp_path, n_train=40, n_test=20)
    a = build_data(make_cfg("MNIST", tmp_path, train_subset=10, test_subset=5), CPU, 0)
    b = build_data(make_cfg("MNIST", tmp_path, train_subset=10, test_subset=5, seed=3), CPU, 3)
    assert len(a.probe_train) == 10 and len(a.probe_test) == 5
    assert torch.equal(a.probe_train.split.images, b.probe_train.split.images)
    assert len(a.train_views) == 10 // 4


def test_num_classes_and_batch_size_checked_against_the_data(tmp_path):
    write_idx_set(tmp_path, n_train=10, n_test=5, gz=False)
    with pytest.raises(DataError, match="--num_classes: MNIST .* has 10 classes"):
        load("MNIST", tmp_path, num_classes=7)
    with pytest.raises(DataError, match="--batch_size: MNIST has 10 training images"):
        load("MNIST", tmp_path, batch_size=16)


def test_tar_fixture_is_a_real_gzip_tar(tmp_path):
    path, _ = write_cifar(tmp_path)
    with tarfile.open(path, "r:gz") as tar:
        assert "cifar-10-batches-py/data_batch_1" in tar.getnames()
    assert os.path.getsize(path) > 0 and io.BytesIO(path.read_bytes()).read(2) == b"\x1f\x8b"


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="/usr/share/datasets/fashion-mnist absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_normalization_constants_match_the_training_split():
    from mimax.data.idx import read_idx

    x = read_idx(Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"), 3) / 255.0
    mean, std = normalization("FashionMNIST")
    assert abs(x.mean() - mean[0]) < 1e-4 and abs(x.std() - std[0]) < 1e-4


def test_subsets_larger_than_the_split_and_unused_ones_get_a_note(tmp_path):
    """``--train_subset``/``--test_subset`` above the split's size used every image without a word; a
    ``--test_subset`` where no test split is evaluated was ignored silently."""
    write_class_tree(tmp_path / "tv" / "train", ["a", "b"], per_class=5)
    write_class_tree(tmp_path / "tv" / "val", ["a", "b"], per_class=3)
    notes_ = load("ImageFolder", tmp_path / "tv", image_size=16, train_subset=50, test_subset=6,
                  batch_size=4).extras["notes"]
    assert "--train_subset 50: ImageFolder has 10 training images; all of them are used" in notes_
    assert not any("--test_subset" in n for n in notes_), notes_  # exactly the split's size: nothing to say
    notes_ = load("ImageFolder", tmp_path / "tv", image_size=16, train_subset=4, test_subset=7, no_labels=True,
                  batch_size=4).extras["notes"]
    assert not any("--train_subset" in n for n in notes_), notes_
    assert "--test_subset 7 unused: no test split is evaluated here (--dataset Folder or --no_labels)" in notes_
