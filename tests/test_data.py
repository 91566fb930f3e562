"""Data sets: sources, cache, statistics, sampling and batch augmentation."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from modgraph import data, paths
from modgraph.data import (
    DATASETS,
    ArrayDataset,
    DatasetNotFoundError,
    augment_batch,
    channel_stats,
    load_dataset,
    load_image_folder,
    sample_indices,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty project root without network access."""
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    monkeypatch.setattr(data, "_host_reachable", lambda *a, **k: False)
    return tmp_path


def _write_tree(root, split, classes, per_class, seed, size=(32, 32), suffix=".png"):
    """Random images root/<split>/<class>/<i>.png; returns {(class, file): array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        folder = root / split / c
        folder.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"{i:04d}{suffix}")
            written[(c, f"{i:04d}{suffix}")] = arr
    return written


def test_registered_names_and_bad_arguments(home):
    assert DATASETS.names() == ["cifar10", "cifar100", "digits", "imagenet50"]
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid choices: cifar10, cifar100, digits, imagenet"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown split 'val'; valid choices: train, test"):
        load_dataset("digits", "val")


def test_digits_split_upsampling_and_statistics(home):
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train", progress=False), load_dataset("digits", "test", progress=False)
    assert (len(train), len(test), train.num_classes) == (1297, 500, 10)
    assert train.images.shape[1:] == (32, 32, 3) and train.images.dtype == np.uint8
    assert np.bincount(test.labels).min() >= 48  # stratified: ~50 per class
    blocks = test.images[..., 0].reshape(500, 8, 4, 8, 4)
    assert (blocks == blocks[:, :, :1, :, :1]).all()  # nearest neighbour: constant 4x4 blocks
    assert (test.images[..., 0] == test.images[..., 2]).all()
    reference = load_digits()
    originals = {(lab, img.tobytes()) for img, lab in zip(np.rint(reference.images * 255 / 16).astype(np.uint8),
                                                          reference.target)}
    pooled = {(lab, img.tobytes()) for img, lab in zip(train.images[:, ::4, ::4, 0], train.labels)}
    assert pooled <= originals
    assert len({img.tobytes() for img in test.images[:, ::4, ::4, 0]} & {p[1] for p in pooled}) < 5  # no leak
    assert train.mean == pytest.approx(channel_stats(train.images)[0]) and test.mean == train.mean
    assert test.std == train.std
    x = train.images.reshape(-1, 3) / 255.0
    assert train.std == pytest.approx(x.std(0)) and train.mean == pytest.approx(x.mean(0))


def test_cache_is_used_and_corruption_rebuilds(home):
    first = load_dataset("digits", "test", progress=False)
    cache = paths.cache_dir() / "digits-test.npz"
    assert cache.is_file()
    again = load_dataset("digits", "test", progress=False)
    np.testing.assert_array_equal(first.images, again.images)
    assert (again.classes, again.mean, again.source) == (first.classes, first.mean, first.source)
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="corrupted data-set cache"):
        rebuilt = load_dataset("digits", "test", progress=False)
    np.testing.assert_array_equal(first.images, rebuilt.images)
    np.testing.assert_array_equal(first.labels, rebuilt.labels)
    load_dataset("digits", "test", progress=False)  # healthy again: no warning


def test_cifar10_image_tree_and_tar_give_the_same_arrays(home, tmp_path_factory, monkeypatch):
    classes = ["cat", "airplane", "dog"]
    written = {s: _write_tree(home / "data" / "cifar10", s, classes, n, seed)
               for s, n, seed in (("train", 4, 0), ("test", 2, 1))}
    test = load_dataset("cifar10", "test", progress=False)
    assert test.classes == ("airplane", "cat", "dog") and "image tree" in test.source
    keys = sorted(written["test"])
    np.testing.assert_array_equal(test.images, np.stack([written["test"][k] for k in keys]))
    np.testing.assert_array_equal(test.labels, [test.classes.index(c) for c, _ in keys])
    train = load_dataset("cifar10", "train", progress=False)
    assert len(train) == 12 and test.mean == train.mean == pytest.approx(channel_stats(train.images)[0])

    other = tmp_path_factory.mktemp("tarhome")
    (other / "data").mkdir()
    with tarfile.open(other / "data" / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(home / "data" / "cifar10", arcname="cifar10")
    monkeypatch.setenv("MODGRAPH_HOME", str(other))
    from_tar = load_dataset("cifar10", "test", progress=False)
    assert "tar" in from_tar.source and from_tar.classes == test.classes
    np.testing.assert_array_equal(from_tar.images, test.images)
    np.testing.assert_array_equal(from_tar.labels, test.labels)
    assert from_tar.mean == pytest.approx(test.mean)


def _write_cifar100_pickle(root, seed):
    rng = np.random.default_rng(seed)
    folder = root / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"class{i:03d}".encode() for i in range(100)]
    batches = {}
    for split, n in (("train", 300), ("test", 120)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": rng.integers(0, 100, n).tolist(), b"coarse_labels": [0] * n}
        (folder / split).write_bytes(pickle.dumps(batch))
        batches[split] = batch
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": [b"x"]}))
    return batches


def test_cifar100_from_the_official_pickle_format(home):
    batches = _write_cifar100_pickle(home, 0)
    test = load_dataset("cifar100", "test", progress=False)
    assert (len(test), test.num_classes, test.classes[7]) == (120, 100, "class007")
    assert "pickle" in test.source
    row = batches["test"][b"data"][5]
    np.testing.assert_array_equal(test.images[5, :, :, 0], row[:1024].reshape(32, 32))  # red plane
    np.testing.assert_array_equal(test.images[5, 3, 4], row[[3 * 32 + 4, 1024 + 3 * 32 + 4, 2048 + 3 * 32 + 4]])
    np.testing.assert_array_equal(test.labels, batches["test"][b"fine_labels"])
    train = load_dataset("cifar100", "train", progress=False)
    assert len(train) == 300 and test.mean == train.mean


def test_missing_cifar_says_where_to_put_files(home):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", "test", progress=False)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    for needle in ("cifar10/{train,test}/<class>", "cifar10.tar.gz", "cifar-10-batches-py", "unreachable"):
        assert needle in message


@pytest.mark.cifar
def test_real_cifar10():
    if not (paths.datasets_dir() / "cifar10").is_dir():
        if os.environ.get("CI"):
            pytest.fail("data/cifar10 is missing in CI: make test unpacks it from ../shared/datasets")
        pytest.skip("data/cifar10 not unpacked (make test does it when ../shared/datasets has the copy)")
    test = load_dataset("cifar10", "test", progress=False)
    train = load_dataset("cifar10", "train", progress=False)
    assert (len(train), len(test)) == (50000, 10000)
    assert test.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.images.shape[1:] == (32, 32, 3)
    assert test.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.003)  # the official statistics
    assert test.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=0.003)


def test_image_folder_resizes_and_centre_crops(tmp_path):
    _write_tree(tmp_path, "val", ["b", "a"], 2, 0, size=(40, 60), suffix=".jpg")
    folder = load_image_folder(tmp_path / "val", size=16, progress=False)
    assert folder.images.shape == (4, 16, 16, 3) and folder.classes == ("a", "b")
    assert folder.mean == data.IMAGENET_MEAN
    only_b = load_image_folder(tmp_path / "val", classes=["b"], size=16, progress=False)
    np.testing.assert_array_equal(only_b.images, folder.images[2:])
    assert only_b.labels.tolist() == [0, 0]
    _write_tree(tmp_path, "mixed", ["a"], 1, 0, size=(8, 8))
    Image.new("RGB", (9, 9)).save(tmp_path / "mixed" / "a" / "odd.png")
    with pytest.raises(ValueError, match="images differ in size: .*odd.png is"):
        load_image_folder(tmp_path / "mixed", size=None, progress=False)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_imagenet50_takes_every_20th_wordnet_id(home):
    val = home / "data" / "imagenet" / "val"
    wnids = [f"n{i:08d}" for i in range(1000)]
    for i, wnid in enumerate(wnids):
        (val / wnid).mkdir(parents=True)
        if i % 20 == 0:
            Image.new("RGB", (300, 256), (i % 256, 0, 0)).save(val / wnid / "x.JPEG")
    test = load_dataset("imagenet50", "test", progress=False)
    assert test.classes == tuple(wnids[::20]) and test.labels.tolist() == list(range(50))
    assert test.images.shape == (50, 224, 224, 3) and test.mean == data.IMAGENET_MEAN
    assert test.images[3, 100, 100, 0] == 60


def test_imagenet50_absent(home):
    with pytest.raises(DatasetNotFoundError, match="imagenet/val/<wnid>/\\*.JPEG"):
        load_dataset("imagenet50", "test", progress=False)


def test_array_dataset_validation_tensors_and_subset():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    ds = ArrayDataset("x", "test", images, np.array([0, 1]), ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    x, y = ds.tensors()
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x[1, 2, 3, 1].item() == pytest.approx(images[1, 3, 1, 2] / 255)
    assert ds.subset([1]).labels.tolist() == [1] and ds.num_classes == 2
    with pytest.raises(ValueError, match="uint8 array of shape"):
        ArrayDataset("x", "test", images.astype(np.float32), np.array([0, 1]), ("a", "b"), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="int64 array of shape"):
        ArrayDataset("x", "test", images, np.array([0]), ("a", "b"), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        ArrayDataset("x", "test", images, np.array([0, 2]), ("a", "b"), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="out of range"):
        ds.subset([5])


def test_sample_indices():
    sets = sample_indices(100, 30, 3, seed=7)
    assert [len(s) for s in sets] == [30, 30, 30]
    assert len(set(np.concatenate(sets).tolist())) == 90
    assert all((np.diff(s) > 0).all() for s in sets)
    assert all((a == b).all() for a, b in zip(sets, sample_indices(100, 30, 3, seed=7)))
    assert not all((a == b).all() for a, b in zip(sets, sample_indices(100, 30, 3, seed=8)))
    with pytest.raises(ValueError, match="need 40 items but only 30 are available"):
        sample_indices(30, 20, 2, seed=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        sample_indices(30, 0, 2, seed=0)


def _augment_reference(x, generator, pad, flip):
    """Per-image loop with torchvision semantics, drawing the same random numbers in the same order."""
    b = x.shape[0]
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    out = []
    for i in range(b):
        img = torch.nn.functional.pad(x[i], (pad, pad, pad, pad))[:, oy[i]:oy[i] + x.shape[2], ox[i]:ox[i] + x.shape[3]]
        out.append(img.flip(-1) if flip and flips[i] else img)
    return torch.stack(out)


def test_augment_batch_equals_per_image_crop_and_flip():
    x = torch.rand(16, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    out = augment_batch(x, torch.Generator().manual_seed(5), pad=3, flip=True)
    torch.testing.assert_close(out, _augment_reference(x, torch.Generator().manual_seed(5), 3, True), rtol=0, atol=0)
    assert not torch.equal(out, x)
    again = augment_batch(x, torch.Generator().manual_seed(5), pad=3, flip=True)
    assert torch.equal(out, again)
    flipped_only = augment_batch(x, torch.Generator().manual_seed(1), pad=0, flip=True)
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped_only, x))
    assert torch.equal(augment_batch(x, torch.Generator(), pad=0, flip=False), x)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        augment_batch(x[0], torch.Generator())
