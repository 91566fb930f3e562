"""``python -m modgraph curve``: options, errors (exit code 2) and an end-to-end run on digits."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types

import numpy as np
import pytest
import torch
import torchvision

import modgraph.cli as cli
from modgraph.cli import curve as curve_cli
from modgraph.curve import Curve, modularity_curve
from modgraph.data import load_dataset
from modgraph.features import layer_names
from modgraph.models import create_model

ARCH, WIDTH = "vgg11", 0.0625


@pytest.fixture(scope="module")
def home(module_home, single_thread):
    """A private project root: data-set caches and default outputs stay out of the checkout."""
    return module_home


@pytest.fixture(scope="module")
def digits(home):
    return load_dataset("digits", "test", progress=False)


@pytest.fixture(scope="module")
def checkpoint(home, digits):
    """A (randomly initialised) tiny VGG saved the way the store saves models."""
    model = create_model(ARCH, num_classes=digits.num_classes, width=WIDTH, mean=digits.mean, std=digits.std, seed=0)
    path = home / "tiny.pt"
    torch.save({"state_dict": model.state_dict(), "spec": {"arch": ARCH, "width": WIDTH}}, path)
    return path, model


def _main(argv: list[str], monkeypatch) -> int:
    """``modgraph.cli.main`` with only the curve subcommand attached."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("curve",))
    return cli.main(argv)


def _args(*extra: str) -> list[str]:
    return ["curve", "--arch", ARCH, "--dataset", "digits", "--width", str(WIDTH), "-n", "40", "-k", "3",
            "--repeats", "2", "--device", "cpu", "--quiet", *extra]


def test_end_to_end_checkpoint_curve_matches_library(checkpoint, digits, home, tmp_path, monkeypatch, capsys):
    path, model = checkpoint
    out = tmp_path / "curve.json"
    assert _main(_args("--checkpoint", str(path), "--out", str(out)), monkeypatch) == 0
    printed = capsys.readouterr().out
    curve = Curve.from_json(out)
    assert curve.layers == tuple(layer_names(model))
    assert f"wrote {out}" in printed and "stage5.1" in printed and "modularity curve of vgg11 on digits" in printed
    assert curve.meta["checkpoint"] == str(path) and curve.meta["spec"] == {"arch": ARCH, "width": WIDTH}
    assert (curve.meta["n"], curve.meta["k"], curve.meta["repeats"], curve.meta["split"]) == (40, 3, 2, "test")
    images, labels = digits.tensors()
    expected = modularity_curve(model, images, labels, n=40, k=3, repeats=2, device="cpu", progress=False)
    np.testing.assert_array_equal(curve.array, expected.array)


def test_bare_state_dict_and_default_output_path(checkpoint, home, monkeypatch, capsys):
    path, model = checkpoint
    bare = home / "bare.pt"
    torch.save(model.state_dict(), bare)
    assert _main(_args("--checkpoint", str(bare), "--similarity", "pearson", "--tap", "conv"), monkeypatch) == 0
    written = list((home / "results" / "curves").glob("*.json"))
    assert [p.name for p in written] == ["vgg11_digits_bare_test_n40_k3_r2_s0_pearson_conv.json"]
    curve = Curve.from_json(written[0])
    assert curve.meta["similarity"] == "pearson" and curve.meta["tap"] == "conv" and "spec" not in curve.meta


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-n", "400"], "only 500 are available"),
        (["-k", "40"], "-k must be smaller than -n"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["-n", "1"], "-n must be >= 2"),
        (["--epochs", "3"], "--epochs describe a stored model"),
        (["--device", "tpu:x"], "unknown device 'tpu:x'"),
        (["--tap", "pool"], "tap 'pool'"),
    ],
)
def test_bad_requests_exit_2_with_a_message(extra, message, checkpoint, monkeypatch, capsys):
    assert _main(_args("--checkpoint", str(checkpoint[0]), *extra), monkeypatch) == 2
    assert message in capsys.readouterr().err


def test_bad_checkpoints_exit_2(checkpoint, digits, home, monkeypatch, capsys):
    assert _main(_args("--checkpoint", str(home / "missing.pt")), monkeypatch) == 2
    assert "does not exist" in capsys.readouterr().err
    wide = create_model(ARCH, num_classes=digits.num_classes, width=2 * WIDTH)
    torch.save({"state_dict": wide.state_dict()}, home / "wide.pt")
    assert _main(_args("--checkpoint", str(home / "wide.pt")), monkeypatch) == 2
    assert "does not fit model 'vgg11' (width 0.0625, 10 classes)" in capsys.readouterr().err
    (home / "junk.pt").write_bytes(b"not a checkpoint")
    assert _main(_args("--checkpoint", str(home / "junk.pt")), monkeypatch) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert _main(_args("--checkpoint", str(checkpoint[0]), "--arch", "vgg99"), monkeypatch) == 2
    assert "valid choices" in capsys.readouterr().err


def test_store_model_is_requested_with_the_given_spec(digits, home, tmp_path, monkeypatch, capsys):
    requested, passed = [], []

    @dataclasses.dataclass(frozen=True)
    class ModelSpec:
        arch: str
        dataset: str
        width: float = 1.0
        recipe: str = "default"
        epochs: int | None = None
        seed: int = 0

    def get_model(spec, device=None, progress=True):
        requested.append(dataclasses.asdict(spec))
        passed.append((device, progress))
        model = create_model(ARCH, num_classes=10, width=WIDTH, mean=digits.mean, std=digits.std, seed=0)
        return types.SimpleNamespace(model=model)

    fake = types.ModuleType("modgraph.store")
    fake.ModelSpec, fake.get_model = ModelSpec, get_model
    monkeypatch.setitem(sys.modules, "modgraph.store", fake)
    argv = _args("--recipe", "fast", "--epochs", "2", "--seed", "1", "--out",
                 str(tmp_path / "c.json"))
    assert _main(argv, monkeypatch) == 0
    expected = {"arch": ARCH, "dataset": "digits", "width": WIDTH, "recipe": "fast", "epochs": 2, "seed": 1}
    assert requested == [expected]
    assert passed == [(torch.device("cpu"), False)]  # --device and --quiet reach the store's training
    assert Curve.from_json(tmp_path / "c.json").meta["spec"] == expected


def test_argument_parsing_and_help(monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="modgraph")
    sub = parser.add_subparsers(dest="command")
    curve_parser = curve_cli.add_parser(sub)
    args = parser.parse_args(["curve", "--arch", "resnet18", "--dataset", "cifar10"])
    assert (args.n, args.k, args.repeats, args.similarity, args.tap, args.split, args.device) == (
        500, 3, 5, "cosine", "block", "test", "auto")
    assert args.checkpoint is None and args.out is None and args.func is curve_cli.run_curve
    undocumented = [a.dest for a in curve_parser._actions if not a.help]
    assert undocumented == []
    with pytest.raises(SystemExit) as exit_info:
        _main(["curve", "--help"], monkeypatch)
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--arch", "--dataset", "--checkpoint", "--recipe", "--epochs", "--width", "--seed", "-n", "-k",
                   "--repeats", "--sample-seed", "--similarity", "--tap", "--split", "--device", "--batch-size",
                   "--out", "--quiet"):
        assert option in help_text, option
    for argv in (_args("--similarity", "euclid"), _args("--checkpoint", "x.pt", "--recipe", "fast"),
                 ["curve", "--dataset", "digits"]):
        with pytest.raises(SystemExit) as exit_info:
            _main(argv, monkeypatch)
        assert exit_info.value.code == 2
    assert "valid choices" not in capsys.readouterr().out


def test_store_folder_is_a_checkpoint_and_its_record_is_checked(checkpoint, digits, home, monkeypatch, capsys):
    _, model = checkpoint
    folder = home / "store-folder"
    folder.mkdir()
    meta = {"arch": ARCH, "num_classes": 10, "width": WIDTH, "overrides": [], "mean": list(digits.mean),
            "std": list(digits.std)}
    torch.save({"state_dict": model.state_dict(), "meta": meta, "spec": {"arch": ARCH, "dataset": "digits",
                                                                          "width": WIDTH}}, folder / "model.pt")
    out = home / "folder-curve.json"
    argv = ["curve", "--arch", ARCH, "--dataset", "digits", "-n", "40", "-k", "3", "--repeats", "2", "--device",
            "cpu", "--quiet", "--checkpoint", str(folder), "--out", str(out)]
    assert _main(argv, monkeypatch) == 0
    assert Curve.from_json(out).meta["width"] == WIDTH  # taken from the checkpoint: no --width needed
    torch.save({"state_dict": model.state_dict(), "meta": meta, "spec": {"arch": ARCH, "dataset": "cifar10"}},
               folder / "model.pt")
    assert _main(argv, monkeypatch) == 2
    assert "trained with dataset 'cifar10', not 'digits'" in capsys.readouterr().err


def test_user_factory_through_the_cli(digits, home, tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "factory.json"
    argv = ["curve", "--model", "mynets:tiny", "--dataset", "digits", "--layers", "1,3", "-n", "40", "--repeats", "2",
            "--device", "cpu", "--quiet", "--out", str(out)]
    assert _main(argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "WARNING: mynets:tiny has random initial weights" in printed
    curve = Curve.from_json(out)
    assert curve.layers == ("1", "3") and curve.meta["source"] == "mynets:tiny" and curve.meta["weights"] == "none"
    assert curve.meta["layer_selection"] == ["1", "3"] and curve.meta["normalize"] == "none"


@pytest.mark.parametrize(("name", "block", "count"), [
    ("efficientnet_b0", "MBConv", 16), ("swin_t", "SwinTransformerBlock", 12),
    ("mobilenet_v3_small", "InvertedResidual", 11), ("convnext_tiny", "CNBlock", 18),
])
def test_torchvision_families_give_a_finite_curve_of_their_blocks(name, block, count, digits, home, tmp_path,
                                                                    monkeypatch):
    out = tmp_path / f"{name}.json"
    argv = ["curve", "--model", f"torchvision:{name}", "--weights", "none", "--dataset", "digits", "-n", "30",
            "--repeats", "1", "--image-size", "64", "--device", "cpu", "--quiet", "--out", str(out)]
    assert _main(argv, monkeypatch) == 0
    curve = Curve.from_json(out)
    net = torchvision.models.get_model(name, weights=None)
    assert list(curve.layers) == [n for n, m in net.named_modules() if type(m).__name__ == block]
    assert len(curve.layers) == count and np.isfinite(curve.mean).all() and (curve.mean > 0).all()
    assert curve.meta["tokens"] == "flatten" and curve.meta["image_size"] == 64


@pytest.mark.parametrize(("extra", "message"), [
    (["--model", "resnet18"], "bad model source 'resnet18'"),
    (["--model", "nosuchpkg.mod:make"], "cannot import module 'nosuchpkg.mod'"),
    (["--model", "torchvision:resnet9"], "torchvision has no model 'resnet9'"),
    (["--model", "torchvision:resnet18", "--weights", "/nonexistent.pt"], "does not exist"),
    (["--model", "torchvision:resnet18", "--width", "0.5"], "--width describe a modgraph model"),
    (["--arch", ARCH, "--layers", "stage9.*"], "'stage9.\\*' matches no module of VGG"),
    (["--arch", ARCH, "--weights", "x.pt"], "--weights apply to --model"),
])
def test_bad_model_sources_exit_2(extra, message, home, monkeypatch, capsys):
    argv = ["curve", "--dataset", "digits", "-n", "40", "--device", "cpu", "--quiet", *extra]
    assert _main(argv, monkeypatch) == 2
    assert message.replace("\\", "") in capsys.readouterr().err
