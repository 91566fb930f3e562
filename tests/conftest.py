"""Fixtures shared by the test modules."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import nbformat
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny problems: thread hand-off costs dominate them on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_model_kernels():
    """Native kernels on one thread: oneDNN compiles kernels for every new conv shape (seconds each), and
    thread barriers stall on the shared cores; tiny models need neither."""
    enabled, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    yield
    torch.backends.mkldnn.enabled = enabled
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def close_figures():
    """Close the matplotlib figures a test left open (where pyplot was imported at all)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """An empty project root shared by a module's tests: ``MODGRAPH_HOME`` is set while they run."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_HOME", str(root))
        yield root


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty project root: ``MODGRAPH_HOME`` is ``tmp_path`` for the test."""
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def stub_store(tmp_path, monkeypatch) -> Callable[[nn.Module, float], list]:
    """``stub_store(model, acc)``: a fresh MODGRAPH_HOME whose ``store.get_model`` returns ``model`` with
    final test accuracy ``acc`` (no training in unit tests); returns the list of specs it was asked for."""
    from modgraph import store

    def install(model: nn.Module, acc: float) -> list:
        monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
        calls: list = []

        def get_model(spec, device=None, progress=True):
            calls.append(spec)
            return SimpleNamespace(model=model, metrics={"final_test_acc": acc})

        monkeypatch.setattr(store, "get_model", get_model)
        return calls

    return install


@pytest.fixture(scope="module")
def bad_input_home(tmp_path_factory):
    """A private project root that shares the checkout's notebooks and params, and tiny checkpoints on digits.

    Yields ``SimpleNamespace(root, ckpt)``; ``ckpt`` maps a name to a file or folder: ``digits`` (a store
    folder of an untrained VGG11 at width 0.125 recorded as trained on digits), ``cifar10`` (the same weights
    recorded as trained on CIFAR-10), ``text``, ``empty`` (files that are no checkpoint), ``nomodel`` (a
    folder without ``model.pt``) and ``curve_w025`` (a curve JSON of that VGG11 measured at width 0.25).
    """
    import torch

    from modgraph import paths
    from modgraph.curve import Curve
    from modgraph.data import load_dataset
    from modgraph.features import layer_names
    from modgraph.models import create_model

    root = tmp_path_factory.mktemp("bad_inputs")
    checkout = paths.root()
    for name in ("notebooks", "params", "_toc.yml"):
        (root / name).symlink_to(checkout / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_HOME", str(root))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        data = load_dataset("digits", "test", progress=False)
        model = create_model("vgg11", num_classes=10, width=0.125, mean=data.mean, std=data.std, seed=0)
        meta = {"arch": "vgg11", "num_classes": 10, "width": 0.125, "overrides": [], "mean": list(data.mean),
                "std": list(data.std)}
        ckpt = {"digits": root / "store" / "vgg11-digits", "cifar10": root / "store" / "vgg11-cifar10",
                "text": root / "notes.txt", "empty": root / "empty.pt", "nomodel": root / "nomodel",
                "curve_w025": root / "curve.json"}
        for dataset in ("digits", "cifar10"):
            ckpt[dataset].mkdir(parents=True)
            torch.save({"state_dict": model.state_dict(), "meta": meta,
                        "spec": {"arch": "vgg11", "dataset": dataset, "width": 0.125}}, ckpt[dataset] / "model.pt")
        ckpt["text"].write_text("not a checkpoint\n")
        ckpt["empty"].write_bytes(b"")
        ckpt["nomodel"].mkdir()
        names = layer_names(model)
        Curve(tuple(names), [[0.1 * i for i in range(len(names))]] * 2,
              {"arch": "vgg11", "dataset": "digits", "width": 0.25, "tap": "block"}).to_json(ckpt["curve_w025"])
        yield SimpleNamespace(root=root, ckpt=ckpt)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def clustered_images() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``clustered_images(n_per_class, classes=4, seed=0)``: 32x32 images whose class sets a colour offset, so
    features carry class structure, and their labels."""

    def make(n_per_class: int, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        base = torch.rand(classes, 3, 1, 1, generator=gen)
        noise = torch.rand(len(labels), 3, 32, 32, generator=gen)
        return (0.6 * base[labels] + 0.4 * noise).clamp(0, 1), labels

    return make


class Ridge(nn.Module):
    """Ridge regression of one-hot labels on the digits' 8x8 grey levels (one pixel of channel 0 per 4x4
    block); about 93 % test accuracy and easy to fool. Layers: the pixels and the logits."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, lam: float = 1e-2) -> None:
        super().__init__()
        x = torch.cat([images[:, :1, ::4, ::4].flatten(1), torch.ones(len(images), 1)], dim=1)
        w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ F.one_hot(labels, 10).float())
        weight = torch.zeros(10, *images.shape[1:])
        weight[:, 0, ::4, ::4] = w[:-1].T.reshape(10, 8, 8)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(weight[0].numel(), 10)
        with torch.no_grad():
            self.fc.weight.copy_(weight.flatten(1))
            self.fc.bias.copy_(w[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(x))

    def feature_layers(self, tap: str = "block"):
        return [("flat", self.flat), ("fc", self.fc)]


@pytest.fixture
def ridge_store(tmp_path, monkeypatch):
    """``get_model`` returns a ridge classifier of the digits training set; records its calls."""
    from modgraph import store as store_module

    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    from modgraph.data import load_dataset

    model = Ridge(*load_dataset("digits", "train", progress=False).tensors()).eval()
    calls = []

    def get_model(spec, device=None, progress=True):
        calls.append(spec)
        return SimpleNamespace(model=model, metrics={"final_test_acc": 0.9})

    monkeypatch.setattr(store_module, "get_model", get_model)
    return SimpleNamespace(model=model, calls=calls, spec=store_module.ModelSpec("vgg11", "digits", recipe="smoke"))


PARAMS_HEAD = "profile = 'smoke'\noutput = 'smoke'\n"
BODY = (
    "from pathlib import Path\n"
    "if x == 13:\n"
    "    raise RuntimeError('unlucky x')\n"
    "out = Path('results') / output / (NAME + '.txt')\n"
    "out.parent.mkdir(parents=True, exist_ok=True)\n"
    "out.write_text(f'{profile} {x} {items}')\n"
)


def write_notebook(path: Path, name: str, params: str = "x = 1\nitems = [1, 2]\n", body: str = BODY) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {name}"),
        nbformat.v4.new_code_cell(PARAMS_HEAD + params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f"NAME = {name!r}\n" + body),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def write_params(root: Path, profile: str, data: dict) -> None:
    (root / "params").mkdir(exist_ok=True)
    (root / "params" / f"{profile}.yml").write_text(yaml.safe_dump(data))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root with notebooks aa_first and bb_second, profiles smoke and gpu (gpu: true)."""
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    (tmp_path / "_config.yml").write_text("title: test\nexecute:\n  execute_notebooks: 'off'\n")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "book/intro",
        "chapters": [{"file": "notebooks/aa_first"}, {"file": "notebooks/bb_second"}],
    }))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    write_notebook(tmp_path / "notebooks" / "aa_first.ipynb", "aa_first")
    write_notebook(tmp_path / "notebooks" / "bb_second.ipynb", "bb_second")
    write_params(tmp_path, "smoke", {"profile": {"description": "tiny"}, "defaults": {"x": 2},
                                     "bb_second": {"items": [3]}})
    write_params(tmp_path, "gpu", {"profile": {"description": "needs CUDA", "gpu": True}, "defaults": {"x": 5}})
    from modgraph import profiles

    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    return tmp_path
