"""Image classification data sets as in-memory uint8 arrays, decoded once and cached.

Every data set is a :class:`ArrayDataset`: ``images`` uint8 ``(N, H, W, 3)``,
``labels`` int64 ``(N,)``, the class names and the per-channel ``mean``/``std``
of its train split in ``[0, 1]`` units (what models normalise with). The first
:func:`load_dataset` call decodes the raw files into ``paths.cache_dir()``
(``<name>-<split>.npz``); later calls read that cache in about a second. Delete
the cache file to re-decode after changing the raw files.

Registered data sets (:data:`DATASETS`):

``cifar10``, ``cifar100``
    Sources, tried in order below ``paths.datasets_dir()`` (``data/``):
    (1) an image tree ``<name>/{train,test}/<class>/*.{jpg,jpeg,png}``;
    (2) a ``<name>*.tar``/``.tar.gz``/``.tgz`` holding such a tree (read without
    extracting); (3) the official python-pickle release
    (``cifar-10-batches-py/``, ``cifar-100-python/``); (4) a torchvision
    download of (3) when the host is reachable. Class order is the sorted class
    folder names, which equals the official label order for both data sets.
``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images, no download),
    grey levels 0..16 scaled to 0..255, upsampled to 32x32 by nearest
    neighbour (each pixel becomes a 4x4 block, so no interpolation choices
    leak into the data) and repeated to 3 channels. Stratified split with
    seed 0: 1297 train / 500 test images. The offline default for tests.
``imagenet50``
    50 ImageNet classes read from ``imagenet/{train,val}/<wnid>/*.JPEG`` (the
    ``test`` split is ImageNet's validation set): the WordNet ids at positions
    0, 20, ..., 980 of the 1000 sorted class folders (the paper does not
    publish its class list). Labels are 0..49 in that order, so label ``i`` is
    index ``20 * i`` of a 1000-way ImageNet classifier. Resize 256, centre
    crop 224, ImageNet mean/std.
"""

from __future__ import annotations

import io
import pickle
import re
import socket
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from modgraph import paths, provenance
from modgraph.registry import Registry

__all__ = [
    "ArrayDataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DATASETS",
    "SPLITS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_dataset",
    "load_image_folder",
    "channel_stats",
    "sample_indices",
    "augment_batch",
]

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_PICKLE = {
    "cifar10": ("cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                        "data_batch_5"], ["test_batch"], "batches.meta", b"label_names", b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_label_names", b"fine_labels"),
}
_DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """No source for a data set was found; the message says where to put which files."""


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled image set held in memory.

    ``images`` uint8 ``(N, H, W, 3)``; ``labels`` int64 ``(N,)`` in
    ``[0, len(classes))``; ``mean``/``std`` per-channel statistics of the
    train split in ``[0, 1]`` units; ``source`` says where the pixels came from.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str = ""

    def __post_init__(self) -> None:
        imgs, labels = self.images, self.labels
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 array of shape (N, H, W, 3), got "
                             f"{getattr(imgs, 'dtype', type(imgs))} {getattr(imgs, 'shape', '')}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != imgs.shape[:1]:
            raise ValueError(f"labels must be an int64 array of shape ({imgs.shape[0]},), got "
                             f"{getattr(labels, 'dtype', type(labels))} {getattr(labels, 'shape', '')}")
        if len(self.classes) == 0 or (labels.size and (labels.min() < 0 or labels.max() >= len(self.classes))):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels with std > 0, got {self.mean}, {self.std}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.images.shape[1], self.images.shape[2]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def tensors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 images ``(N, 3, H, W)`` in ``[0, 1]`` and int64 labels ``(N,)`` on ``device``."""
        x = torch.from_numpy(self.images).to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return x, torch.from_numpy(self.labels).to(device)

    def subset(self, indices: np.ndarray | Iterable[int]) -> "ArrayDataset":
        """The samples at ``indices`` (1-D integer array), same classes and statistics."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"indices out of range for {len(self)} samples")
        return ArrayDataset(self.name, self.split, self.images[idx], self.labels[idx], self.classes,
                            self.mean, self.std, self.source)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: ``build(split, progress)`` decodes the raw files.

    ``build`` returns ``(images uint8 (N, H, W, 3), labels int64 (N,), classes, source)``.
    ``mean``/``std`` fixed statistics, or ``None`` to measure them on the train split.
    """

    name: str
    build: Callable[[str, bool], tuple[np.ndarray, np.ndarray, tuple[str, ...], str]]
    description: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def load_dataset(name: str, split: str = "test", *, progress: bool = True) -> ArrayDataset:
    """The ``split`` (``"train"`` or ``"test"``) of data set ``name``, from the cache or decoded once."""
    info = DATASETS.get(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    cache = paths.cache_dir() / f"{info.name}-{split}.npz"
    if cache.exists():
        try:
            return _read_cache(cache, info.name, split)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(f"corrupted data-set cache {cache} ({err}); decoding {info.name} {split} again",
                          stacklevel=2)
    images, labels, classes, source = info.build(split, progress)
    if info.mean is not None and info.std is not None:
        mean, std = info.mean, info.std
    elif split == "train":
        mean, std = channel_stats(images)
    else:
        train = load_dataset(info.name, "train", progress=progress)
        mean, std = train.mean, train.std
    data = ArrayDataset(info.name, split, images, labels.astype(np.int64), tuple(classes), mean, std, source)
    _write_cache(cache, data)
    return data


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 ``(N, H, W, 3)`` images in ``[0, 1]`` units."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W, 3) with N > 0, got {images.shape}")
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        total += block.sum(0)
        squares += np.square(block).sum(0)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _write_cache(path: Path, data: ArrayDataset) -> None:
    buf = io.BytesIO()
    np.savez(buf, images=data.images, labels=data.labels, classes=np.array(data.classes),
             mean=np.array(data.mean), std=np.array(data.std), source=np.array(data.source),
             code_version=np.array(provenance.code_version()))
    provenance.atomic_write_bytes(path, buf.getvalue())


def _read_cache(path: Path, name: str, split: str) -> ArrayDataset:
    with np.load(path, allow_pickle=False) as z:
        return ArrayDataset(name, split, z["images"], z["labels"], tuple(z["classes"].tolist()),
                            tuple(z["mean"].tolist()), tuple(z["std"].tolist()), str(z["source"]))


def sample_indices(n_total: int, n: int, repeats: int, seed: int) -> list[np.ndarray]:
    """``repeats`` disjoint sorted int64 index sets of size ``n`` drawn from ``range(n_total)``."""
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be >= 1, got n={n}, repeats={repeats}")
    if n * repeats > n_total:
        raise ValueError(f"{repeats} disjoint samples of {n} need {n * repeats} items but only {n_total} "
                         f"are available")
    perm = np.random.default_rng(seed).permutation(n_total)
    return [np.sort(perm[r * n:(r + 1) * n]).astype(np.int64) for r in range(repeats)]


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop of the zero-padded batch (torchvision ``RandomCrop(padding=pad)``) plus horizontal flip.

    ``x`` ``(B, C, H, W)``; returns the same shape. Zero padding in pixel space
    is black, as in the paper's torchvision pipeline. One gather for the whole
    batch; offsets and flips are drawn from ``generator`` (any device), so the
    result is a function of the generator state.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    b, c, h, w = x.shape
    gen_device = generator.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gen_device).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=gen_device).to(x.device)
    flips = (torch.rand(b, generator=generator, device=gen_device) < 0.5).to(x.device) if flip else None
    if pad == 0 and flips is None:
        return x
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flips is not None:
        cols = torch.where(flips[:, None], w - 1 - cols, cols)
    cols = ox[:, None] + cols
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


# --------------------------------------------------------------------------- sources


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _decode(data: bytes | Path, transform: Callable | None, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img = img.convert("RGB")
            if transform is not None:
                img = transform(img)
            return np.asarray(img, dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"cannot decode image {where}: {err}") from err


def _stack(images: list[np.ndarray], names: list[str]) -> np.ndarray:
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        first = images[0].shape
        odd = next(n for a, n in zip(images, names) if a.shape != first)
        raise ValueError(f"images differ in size: {odd} is {images[names.index(odd)].shape[:2]}, "
                         f"the first is {first[:2]}; pass a size to resize them")
    return np.stack(images)


def _read_tree(root: Path, classes: Iterable[str] | None, transform: Callable | None,
               progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images of a one-folder-per-class tree, ordered by (class, file name)."""
    found = {p.name: p for p in _class_dirs(root)}
    names = sorted(found) if classes is None else list(classes)
    missing = [c for c in names if c not in found]
    if missing:
        raise ValueError(f"class folders {missing[:5]} missing under {root}")
    if not names:
        raise ValueError(f"no class folders under {root}")
    files = [(label, f) for label, c in enumerate(names)
             for f in sorted(found[c].iterdir(), key=lambda p: p.name) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {root}")
    images = [_decode(f, transform, str(f)) for _, f in tqdm(files, desc=f"decode {root.name}",
                                                              disable=not progress, unit="img")]
    labels = np.array([label for label, _ in files], dtype=np.int64)
    return _stack(images, [str(f) for _, f in files]), labels, tuple(names)


def _read_tar(path: Path, split: str, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images of ``.../<split>/<class>/<file>`` members of a tar, ordered by (class, file name)."""
    members: dict[tuple[str, str], np.ndarray] = {}
    with tarfile.open(path, "r|*") as tar:
        for member in tqdm(tar, desc=f"read {path.name}", disable=not progress, unit="file"):
            parts = PurePosixPath(member.name).parts
            if (member.isfile() and len(parts) >= 3 and parts[-3] == split
                    and PurePosixPath(parts[-1]).suffix.lower() in IMAGE_SUFFIXES):
                data = tar.extractfile(member).read()
                members[(parts[-2], parts[-1])] = _decode(data, None, f"{path}:{member.name}")
    if not members:
        raise ValueError(f"{path} holds no {split}/<class>/<image> members")
    keys = sorted(members)
    classes = tuple(sorted({c for c, _ in keys}))
    labels = np.array([classes.index(c) for c, _ in keys], dtype=np.int64)
    return _stack([members[k] for k in keys], [f"{path}:{k}" for k in keys]), labels, classes


def _read_cifar_pickle(folder: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    _, train_files, test_files, meta_file, names_key, labels_key = _CIFAR_PICKLE[name]
    batches = [_unpickle(folder / f) for f in (train_files if split == "train" else test_files)]
    classes = tuple(c.decode() for c in _unpickle(folder / meta_file)[names_key])
    try:
        data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[labels_key], dtype=np.int64) for b in batches])
    except KeyError as err:
        raise ValueError(f"{folder} is not in the CIFAR python format: missing key {err}") from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{folder}: expected rows of 3072 bytes, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels, classes


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def _host_reachable(address: tuple[str, int], timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _download_cifar(name: str, root: Path) -> None:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    cls(root=str(root), train=True, download=True)


def _cifar_tars(name: str, root: Path) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(name)}([-_.].*)?\.(tar|tar\.gz|tgz)$")
    return sorted(p for p in root.glob(f"{name}*") if p.is_file() and pattern.match(p.name))


def _cifar_builder(name: str) -> Callable[[str, bool], tuple[np.ndarray, np.ndarray, tuple[str, ...], str]]:
    def build(split: str, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
        root = paths.datasets_dir()
        tree = root / name / split
        if tree.is_dir():
            return (*_read_tree(tree, None, None, progress), f"image tree {tree}")
        tars = _cifar_tars(name, root)
        if tars:
            return (*_read_tar(tars[0], split, progress), f"tar {tars[0]}")
        folder = root / _CIFAR_PICKLE[name][0]
        if not folder.is_dir() and _host_reachable(_DOWNLOAD_HOST):
            _download_cifar(name, root)
        if folder.is_dir():
            return (*_read_cifar_pickle(folder, name, split), f"python pickle {folder}")
        where = paths.relative(root)
        raise DatasetNotFoundError(
            f"no {name} data found and {_DOWNLOAD_HOST[0]} is unreachable. Put one of these under {where}/: "
            f"(1) an image tree {where}/{name}/{{train,test}}/<class>/*.jpg|png; "
            f"(2) an archive {where}/{name}.tar.gz (or {name}-*.tar[.gz]) holding train/<class>/... and "
            f"test/<class>/...; (3) the official python release folder {paths.relative(folder)}/ "
            f"(from {'cifar-10-python.tar.gz' if name == 'cifar10' else 'cifar-100-python.tar.gz'})")

    return build


def _build_digits(split: str, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    idx_train, idx_test = train_test_split(np.arange(len(grey)), test_size=500, stratify=digits.target,
                                           random_state=0)
    idx = np.sort(idx_train if split == "train" else idx_test)
    big = grey[idx].repeat(4, axis=1).repeat(4, axis=2)
    images = np.ascontiguousarray(np.repeat(big[..., None], 3, axis=3))
    classes = tuple(str(c) for c in digits.target_names)
    return images, digits.target[idx].astype(np.int64), classes, "sklearn.datasets.load_digits"


def load_image_folder(root: str | Path, classes: Iterable[str] | None = None, size: int | None = 224, *,
                      name: str | None = None, split: str = "test",
                      mean: tuple[float, float, float] = IMAGENET_MEAN,
                      std: tuple[float, float, float] = IMAGENET_STD, progress: bool = True) -> ArrayDataset:
    """A one-folder-per-class tree ``root/<class>/*.{jpg,jpeg,png}`` (uncached).

    ``classes``: folder names in label order (default: all, sorted). ``size``:
    resize the shorter side to ``round(size * 256 / 224)`` and centre-crop
    ``size`` x ``size`` (ImageNet evaluation); ``None`` keeps images as they
    are (they must then share one size).
    """
    root = Path(root)
    if not root.is_dir():
        where = paths.relative(root)
        raise DatasetNotFoundError(f"image folder {where} does not exist; expected {where}/<class>/*.jpg")
    transform = None if size is None else _resize_centre_crop(size)
    images, labels, names = _read_tree(root, classes, transform, progress)
    return ArrayDataset(name or root.name, split, images, labels, names, mean, std, f"image tree {root}")


def _resize_centre_crop(size: int) -> Callable:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    short = round(size * 256 / 224)

    def transform(img):
        from PIL import Image

        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        return img.crop((left, top, left + size, top + size))

    return transform


def _build_imagenet50(split: str, progress: bool) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    root = paths.datasets_dir() / "imagenet" / ("train" if split == "train" else "val")
    if not root.is_dir():
        where = paths.relative(root)
        raise DatasetNotFoundError(f"imagenet50 needs ImageNet's {root.name} split as {where}/<wnid>/*.JPEG "
                                   f"(1000 WordNet-id folders); {where} does not exist. ImageNet (ILSVRC2012) "
                                   f"is downloaded from https://image-net.org after registering; sort its "
                                   f"{root.name} images into one folder per WordNet id")
    wnids = [p.name for p in _class_dirs(root)]
    if len(wnids) != 1000:
        raise ValueError(f"{paths.relative(root)} has {len(wnids)} class folders; imagenet50 needs all 1000 ImageNet "
                         f"WordNet ids (it takes every 20th of the sorted list)")
    data = load_image_folder(root, wnids[::20], 224, progress=progress)
    return data.images, data.labels, data.classes, data.source


DATASETS.register("cifar10", DatasetInfo("cifar10", _cifar_builder("cifar10"), "CIFAR-10, 32x32, 10 classes"))
DATASETS.register("cifar100", DatasetInfo("cifar100", _cifar_builder("cifar100"),
                                          "CIFAR-100, 32x32, 100 fine classes"))
DATASETS.register("digits", DatasetInfo("digits", _build_digits,
                                        "scikit-learn 8x8 digits upsampled to 32x32 RGB, 10 classes"))
DATASETS.register("imagenet50", DatasetInfo("imagenet50", _build_imagenet50,
                                            "50 ImageNet classes (every 20th WordNet id), 224x224",
                                            IMAGENET_MEAN, IMAGENET_STD))
