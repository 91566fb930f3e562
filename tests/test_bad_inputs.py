"""Bad input across the CLI and the API, as one table: each case names its problem (exit code or exception type
and message), before any expensive work starts. The one cross-module test file."""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pytest
import torch

from modgraph import book
from modgraph.cli import main
from modgraph.devices import resolve_device
from modgraph.graph import knn_modularity, modularity
from modgraph.store import ModelSpec, load_checkpoint

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
LABELS = np.repeat(np.arange(3), 20)
FEATURES = np.abs(np.random.default_rng(0).normal(size=(60, 8))) + 3 * np.eye(8)[LABELS]


def curve(*extra: str) -> list[str]:
    return ["curve", "--arch", "vgg11", "--dataset", "digits", "-n", "40", "--repeats", "2", "--device", "cpu",
            "--quiet", *extra]


def prune(*extra: str) -> list[str]:
    return ["prune", "--arch", "vgg11", "--dataset", "digits", "--width", "0.125", "-n", "40", "--repeats", "2",
            "--quiet", *extra]


def train(*extra: str) -> list[str]:
    return ["train", "--arch", "vgg11", "--dataset", "digits", "--recipe", "smoke", "--width", "0.125", "--quiet",
            *extra]


def unwritable(home: Any) -> str:
    return str(home.ckpt["text"] / "out.json")  # below a file: no folder can be made there


# (id, argv(home) for the CLI, expected message); every CLI case exits with 2.
CLI_CASES: list[tuple[str, Callable[[Any], list[str]], str]] = [
    ("curve: checkpoint of another data set",
     lambda h: curve("--checkpoint", str(h.ckpt["cifar10"])), "trained with dataset 'cifar10', not 'digits'"),
    ("curve: checkpoint of another width",
     lambda h: curve("--checkpoint", str(h.ckpt["digits"]), "--width", "0.5"), "width 0.125, not 0.5"),
    ("curve: text file as checkpoint", lambda h: curve("--checkpoint", str(h.ckpt["text"])),
     "cannot read checkpoint"),
    ("curve: empty file as checkpoint", lambda h: curve("--checkpoint", str(h.ckpt["empty"])),
     "cannot read checkpoint"),
    ("curve: folder without model.pt", lambda h: curve("--checkpoint", str(h.ckpt["nomodel"])),
     "holds no model.pt"),
    ("curve: missing checkpoint", lambda h: curve("--checkpoint", str(h.root / "none.pt")), "does not exist"),
    ("curve: device mps", lambda h: curve("--checkpoint", str(h.ckpt["digits"]), "--device", "mps"),
     "unsupported device 'mps'"),
    ("curve: device foo", lambda h: curve("--checkpoint", str(h.ckpt["digits"]), "--device", "foo"),
     "unknown device 'foo'; valid choices: auto, cpu, cuda"),
    ("curve: more samples than images, before training", lambda h: curve("--recipe", "smoke", "-n", "400"),
     "only 500 are available"),
    ("curve: unwritable output, before training", lambda h: curve("--recipe", "smoke", "--out", unwritable(h)),
     "cannot write output"),
    ("curve: output is a folder", lambda h: curve("--recipe", "smoke", "--out", str(h.root)), "is a directory"),
    ("curve: unknown tap", lambda h: curve("--recipe", "smoke", "--tap", "pool"), "unknown tap 'pool'"),
    ("curve: unknown architecture", lambda h: curve("--arch", "vgg99"), "unknown model 'vgg99'"),
    ("curve: k not below n", lambda h: curve("-k", "40"), "-k must be smaller than -n"),
    ("curve: negative width", lambda h: curve("--width", "-1"), "--width must be > 0"),
    ("prune: device foo", lambda h: prune("--checkpoint", str(h.ckpt["digits"]), "--device", "foo"),
     "unknown device 'foo'"),
    ("prune: curve measured at another width", lambda h: prune("--curve", str(h.ckpt["curve_w025"])),
     "the curve describes another model: width 0.25, not 0.125"),
    ("prune: corrupted curve JSON", lambda h: prune("--curve", str(h.ckpt["empty"])), "cannot read curve"),
    ("prune: checkpoint of another data set", lambda h: prune("--checkpoint", str(h.ckpt["cifar10"])),
     "trained with dataset 'cifar10', not 'digits'"),
    ("prune: unwritable output", lambda h: prune("--checkpoint", str(h.ckpt["digits"]), "--out", unwritable(h)),
     "cannot write output"),
    ("prune: threshold nan", lambda h: prune("--checkpoint", str(h.ckpt["digits"]), "--threshold", "nan"),
     "--threshold must be a finite number"),
    ("train: device mps", lambda h: train("--device", "mps"), "unsupported device 'mps'"),
    ("train: snapshot after the last epoch", lambda h: train("--snapshot-epochs", "5"), "must lie in 0..2"),
]
CLI_NO_CUDA = [
    ("prune: device cuda without CUDA", lambda h: prune("--checkpoint", str(h.ckpt["digits"]), "--device", "cuda"),
     "CUDA is not available"),
    ("curve: device cuda:1 without CUDA", lambda h: curve("--recipe", "smoke", "--device", "cuda:1"),
     "CUDA is not available"),
]


@pytest.mark.parametrize(("argv", "message"), [pytest.param(a, m, id=i) for i, a, m in CLI_CASES]
                         + [pytest.param(a, m, id=i, marks=NO_CUDA) for i, a, m in CLI_NO_CUDA])
def test_cli_refuses_bad_input_with_exit_2_and_a_message(bad_input_home, capsys, argv, message):
    assert main(argv(bad_input_home)) == 2
    assert message in capsys.readouterr().err
    assert not (bad_input_home.root / "data" / "models").exists()  # nothing was trained


# (id, call(home), exception type, message regex)
API_CASES: list[tuple[str, Callable[[Any], Any], type[Exception], str]] = [
    ("graph: NaN label", lambda h: knn_modularity(FEATURES, np.where(LABELS == 0, np.nan, LABELS)), ValueError,
     "labels must be integer class ids; 20 of 60 are NaN"),
    ("graph: jittered float labels", lambda h: knn_modularity(FEATURES, LABELS + 1e-9), ValueError,
     "60 of 60 are not whole numbers"),
    ("graph: string labels", lambda h: knn_modularity(FEATURES, LABELS.astype(str)), ValueError,
     "labels must be integer class ids .*got dtype <U"),
    ("graph: complex features", lambda h: knn_modularity(FEATURES.astype(np.complex128), LABELS), ValueError,
     "features must be real"),
    ("graph: all-zero features", lambda h: knn_modularity(np.zeros((60, 8)), LABELS), ValueError,
     "every feature row is zero"),
    ("graph: negative adjacency", lambda h: modularity(-np.ones((4, 4)), np.arange(4) % 2), ValueError,
     "16 negative weights"),
    ("devices: mps", lambda h: resolve_device("mps"), ValueError, "unsupported device 'mps'.*valid choices"),
    ("devices: malformed index", lambda h: resolve_device("cuda:x"), ValueError, "unknown device 'cuda:x'"),
    ("store: checkpoint of another data set", lambda h: load_checkpoint(h.ckpt["digits"], dataset="cifar10"),
     ValueError, "trained with dataset 'digits', not 'cifar10'"),
    ("store: checkpoint with other classes", lambda h: load_checkpoint(h.ckpt["digits"], num_classes=100),
     ValueError, "num_classes 10, not 100"),
    ("store: zero width", lambda h: ModelSpec("vgg11", "digits", width=0), ValueError, "width must be a number > 0"),
    ("book: override with null", lambda h: book.run_figure("01_curves", {"k": None}, "smoke"), ValueError,
     "'k' of 01_curves expects int .*got null"),
    ("book: list item of the wrong type", lambda h: book.run_figure("01_curves", {"archs": [11]}, "smoke"),
     ValueError, "expects a list of str"),
    ("book: snapshots beyond the recipe", lambda h: book.run_figure("01_curves", {"keep_snapshots": {"vgg11": 9}},
                                                                    "smoke"),
     ValueError, r"do not fit together: .*int in 0\.\.2 \(recipe 'smoke' trains 2 epochs\), got 9"),
    ("book: a k the samples cannot hold", lambda h: book.run_figure("04_ablations", {"small_ks": [3, 600]}, "smoke"),
     ValueError, r"04_ablations do not fit together: every k must be < n = \d+ .*too large: \[600\]"),
    ("book: override without a value", lambda h: book.parse_overrides([("k",)]), ValueError, "a name and a value"),
]
API_NO_CUDA = [("devices: cuda without CUDA", lambda h: resolve_device("cuda"), ValueError,
                "CUDA is not available")]


@pytest.mark.parametrize(("call", "error", "message"), [pytest.param(c, e, m, id=i) for i, c, e, m in API_CASES]
                         + [pytest.param(c, e, m, id=i, marks=NO_CUDA) for i, c, e, m in API_NO_CUDA])
def test_api_refuses_bad_input_with_a_message(bad_input_home, monkeypatch, call, error, message):
    monkeypatch.setattr(book, "execute_notebook", lambda *a, **k: pytest.fail("a notebook was executed"))
    with pytest.raises(error, match=message):
        call(bad_input_home)


def test_the_table_is_large_enough():
    assert len(CLI_CASES) + len(CLI_NO_CUDA) + len(API_CASES) + len(API_NO_CUDA) >= 30
    assert len({re.sub(r"\W", "", case[0]) for case in CLI_CASES + CLI_NO_CUDA + API_CASES + API_NO_CUDA}) == (
        len(CLI_CASES) + len(CLI_NO_CUDA) + len(API_CASES) + len(API_NO_CUDA))
