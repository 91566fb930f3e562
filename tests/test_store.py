"""The model store end to end on digits with a tiny ResNet: train once, load fast, detect corruption."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import multiprocessing
import subprocess
import sys
import time

import pytest
import torch

from modgraph import paths
from modgraph.cli import train as train_cli
from modgraph.data import load_dataset
from modgraph.models import create_model
from modgraph.store import (
    INITIALISERS,
    REQUEST_LOG_ENV,
    ModelSpec,
    _check_fits,
    get_model,
    load_checkpoint,
    model_dir,
    model_lock,
    spec_hash,
)
from modgraph.train import get_recipe

TINY = dict(arch="resnet20", dataset="digits", recipe="smoke", width=0.25, overrides={"depths": (1, 1, 1)})


@pytest.fixture(scope="module", autouse=True)
def home(module_home, single_thread):
    return module_home


@pytest.fixture(scope="module")
def stored(home):
    """The tiny model trained for the smoke recipe's 2 epochs, with snapshots of epochs 0 and 1."""
    return get_model(ModelSpec(**TINY, snapshot_epochs=(0, 1)), device="cpu", progress=False)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_spec_hash_is_canonical():
    base = ModelSpec(**TINY)
    assert spec_hash(base) == spec_hash(ModelSpec(**{**TINY, "overrides": (("depths", [1, 1, 1]),)}))
    assert spec_hash(base) == spec_hash(ModelSpec(**{**TINY, "arch": "ResNet20", "width": 0.25}))
    assert spec_hash(base) == spec_hash(ModelSpec(**TINY, epochs=get_recipe("smoke").epochs))
    assert spec_hash(base) == spec_hash(ModelSpec(**TINY, snapshot_epochs=(0, 2)))
    for changed in ({"seed": 1}, {"epochs": 1}, {"width": 0.5}, {"recipe": "quick"}):
        assert spec_hash(dataclasses.replace(base, **changed)) != spec_hash(base)
    assert model_dir(base).name == f"resnet20-digits-smoke-{spec_hash(base)}"
    assert model_dir(base).parent == paths.models_dir()
    assert len(spec_hash(base)) == 12


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown model 'resnet7'; valid choices: .*resnet18"):
        ModelSpec("resnet7", "digits")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid choices: cifar10, cifar100, digits"):
        ModelSpec("resnet20", "mnist")
    with pytest.raises(ValueError, match="unknown recipe 'slow'; valid choices: fast, paper"):
        ModelSpec("resnet20", "digits", recipe="slow")
    with pytest.raises(ValueError, match="unknown option"):
        ModelSpec("resnet20", "digits", overrides={"colour": 1})
    with pytest.raises(ValueError, match=r"snapshot_epochs \(0, 3\) must lie in 0..2"):
        ModelSpec(**TINY, snapshot_epochs=(0, 3))
    with pytest.raises(ValueError, match="needs a parent"):
        ModelSpec(**TINY, init="copy")
    with pytest.raises(ValueError, match="unknown initialiser 'magic'; valid choices: copy, transfer"):
        ModelSpec(**TINY, parent=ModelSpec(**TINY), init="magic")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        ModelSpec(**TINY, seed=-1)


def test_train_then_store_hit(stored):
    assert stored.trained and stored.path.is_dir() and not stored.model.training
    metrics = json.loads((stored.path / "metrics.json").read_text())
    assert metrics == stored.metrics
    assert metrics["final_test_acc"] > 0.2  # chance is 0.1
    assert len(metrics["history"]) == 2 and metrics["device"] == "cpu"
    assert {"code_version", "hardware", "wall_time_s", "spec", "files"} <= set(metrics)
    assert not (stored.path / "resume.pt").exists()
    start = time.perf_counter()
    again = get_model(ModelSpec(**TINY, snapshot_epochs=(1,)), device="cpu", progress=False)
    assert time.perf_counter() - start < 5
    assert not again.trained and again.path == stored.path
    assert _equal(_weights(again.model), _weights(stored.model))
    test = load_dataset("digits", "test", progress=False)
    x, y = test.tensors()
    with torch.no_grad():
        acc = (again.model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(metrics["final_test_acc"])


def test_snapshots(stored):
    assert stored.snapshot_epochs == (0, 1)
    init = create_model("resnet20", width=0.25, depths=(1, 1, 1), seed=0, mean=stored.metrics["model"]["mean"],
                        std=stored.metrics["model"]["std"])
    assert _equal(_weights(stored.snapshot(0)), _weights(init))
    assert not _equal(_weights(stored.snapshot(1)), _weights(stored.model))
    with pytest.raises(ValueError, match="no snapshot of epoch 2 .* saved epochs: 0, 1"):
        stored.snapshot(2)


SMALL = ModelSpec(**TINY, epochs=1, seed=5)
CLI_ARGS = ("--arch", "resnet20", "--dataset", "digits", "--recipe", "smoke", "--epochs", "1", "--width", "0.25",
            "--seed", "5", "--device", "cpu", "--quiet", "--override", "depths=[1, 1, 1]")


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def test_cli_trains_then_loads(home, capsys):
    assert _cli(*CLI_ARGS) == 0
    first = capsys.readouterr().out
    assert "trained in" in first and "final test accuracy:" in first
    assert f"store folder: {model_dir(SMALL)}" in first
    assert _cli(*CLI_ARGS) == 0
    second = capsys.readouterr().out
    assert "loaded from the store" in second
    assert first.splitlines()[-2:] == second.splitlines()[-2:]
    with pytest.raises(ValueError, match="unknown recipe 'slow'"):
        _cli("--arch", "resnet20", "--dataset", "digits", "--recipe", "slow")
    with pytest.raises(ValueError, match="--override needs KEY=VALUE"):
        _cli(*CLI_ARGS, "--override", "depths")


def test_truncated_model_is_retrained_identically(home):
    stored = get_model(SMALL, device="cpu", progress=False)
    before = _weights(stored.model)
    model_file = stored.path / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="unusable .*model.pt missing or corrupted"):
        redone = get_model(SMALL, device="cpu", progress=False)
    assert redone.trained and _equal(_weights(redone.model), before)


def test_missing_snapshots_retrain_with_the_union(home):
    first = get_model(SMALL, device="cpu", progress=False)
    assert first.snapshot_epochs == ()
    with pytest.warns(UserWarning, match=r"holds snapshots \[\] but \[0\] were requested"):
        second = get_model(dataclasses.replace(SMALL, snapshot_epochs=(0,)), device="cpu", progress=False)
    assert second.trained and second.snapshot_epochs == (0,)
    assert _equal(_weights(first.model), _weights(second.model))
    third = get_model(SMALL, device="cpu", progress=False)
    assert not third.trained and third.snapshot_epochs == (0,)


def test_parent_initialises_child(stored):
    child = ModelSpec(**TINY, epochs=1, parent=ModelSpec(**TINY), snapshot_epochs=(0,))
    assert child.init == "copy" and spec_hash(child) != spec_hash(dataclasses.replace(child, parent=None, init=None))
    result = get_model(child, device="cpu", progress=False)
    assert _equal(_weights(result.snapshot(0)), _weights(stored.model))
    assert set(INITIALISERS.names()) == {"copy", "transfer"}


def test_child_keeps_its_parents_weights_under_a_recipe_that_initialises(home):
    quick = dict(TINY, recipe="quick")
    parent = get_model(ModelSpec(**quick, epochs=1), device="cpu", progress=False)
    child = get_model(ModelSpec(**quick, epochs=1, parent=ModelSpec(**quick, epochs=1), snapshot_epochs=(0,)),
                      device="cpu", progress=False)
    assert _equal(_weights(child.snapshot(0)), _weights(parent.model))
    assert parent.metrics["initialised"] and not child.metrics["initialised"]


def test_transfer_from_parent_removes_the_named_middle_layer(home):
    from modgraph.prune import prune

    base = dict(TINY, overrides={"depths": (1, 1, 3)})
    parent = ModelSpec(**base, epochs=1)
    child = ModelSpec(**dict(base, overrides={"depths": (1, 1, 2)}), epochs=1, parent=parent, init="transfer",
                      removed=("layer3.1",), snapshot_epochs=(0,))
    assert spec_hash(child) != spec_hash(dataclasses.replace(child, removed=()))
    with pytest.raises(ValueError, match="needs a parent"):
        ModelSpec(**base, removed=("layer3.1",))
    expected = prune(get_model(parent, device="cpu", progress=False).model, ["layer3.1"])
    start = get_model(child, device="cpu", progress=False).snapshot(0)
    assert _equal(_weights(start), _weights(expected))


def test_load_checkpoint(stored, tmp_path):
    model = load_checkpoint(stored.path, device="cpu")
    assert _equal(_weights(model), _weights(stored.model))
    snap = load_checkpoint(stored.path / "snapshots" / "epoch_001.pt", arch="resnet20", device="cpu")
    assert _equal(_weights(snap), _weights(stored.snapshot(1)))
    with pytest.raises(ValueError, match=r"holds a 'resnet20' model, not 'vgg11'"):
        load_checkpoint(stored.path, arch="vgg11")
    bare = tmp_path / "bare.pt"
    torch.save(stored.model.state_dict(), bare)
    loaded = load_checkpoint(bare, "resnet20", width=0.25, overrides={"depths": (1, 1, 1)}, device="cpu")
    assert _equal(_weights(loaded), _weights(stored.model))
    with pytest.raises(ValueError, match="does not fit model 'resnet32'"):
        load_checkpoint(bare, "resnet32", width=0.25)
    with pytest.raises(ValueError, match="does not record its architecture; pass arch="):
        load_checkpoint(bare)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", "resnet20")
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt", "resnet20")


def test_model_that_does_not_fit_the_data_is_refused(home):
    digits = load_dataset("digits", "train", progress=False)
    imagenet_head = create_model("tv_resnet18")
    with pytest.raises(ValueError, match=r"outputs \(1000,\) values per image but digits has 10 classes"):
        _check_fits(imagenet_head, ModelSpec("tv_resnet18", "digits"), digits)
    too_deep = ModelSpec("vgg11", "digits", recipe="smoke", width=0.125,
                         overrides={"stages": ((8,),) * 6})
    with pytest.raises(ValueError, match="cannot take digits images of 32x32"):
        get_model(too_deep, device="cpu", progress=False)


def _interrupt(monkeypatch, after: int = 0):
    """Make the store's training raise ``KeyboardInterrupt`` (as a kill would stop it) after ``after`` epochs."""
    from modgraph import store

    real = store.train_model

    def train_then_die(*args, **kwargs):
        if after:
            real(*args, **{**kwargs, "stop_after_epoch": after})
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "train_model", train_then_die)


def test_retraining_for_snapshots_keeps_the_stored_model_until_replaced(home, monkeypatch):
    spec = ModelSpec(**TINY, epochs=1, seed=7)
    first = get_model(spec, device="cpu", progress=False)
    before = _weights(first.model)
    files = {p.name: p.read_bytes() for p in first.path.iterdir() if p.is_file()}
    _interrupt(monkeypatch)
    with pytest.warns(UserWarning, match="retraining with \\[0\\] beside it"), pytest.raises(KeyboardInterrupt):
        get_model(dataclasses.replace(spec, snapshot_epochs=(0,)), device="cpu", progress=False)
    assert {p.name: p.read_bytes() for p in first.path.iterdir() if p.is_file()} == files
    monkeypatch.undo()
    again = get_model(spec, device="cpu", progress=False)
    assert not again.trained and _equal(_weights(again.model), before)
    with pytest.warns(UserWarning, match="beside it"):
        more = get_model(dataclasses.replace(spec, snapshot_epochs=(0,)), device="cpu", progress=False)
    assert more.trained and more.path == first.path and more.snapshot_epochs == (0,)
    assert _equal(_weights(more.model), before)
    assert sorted(p.name for p in first.path.parent.glob(first.path.name + ".*")) == [first.path.name + ".lock"]


def test_corrupted_model_is_retrained_beside_the_old_files(home, monkeypatch):
    spec = ModelSpec(**TINY, epochs=1, seed=8)
    stored = get_model(spec, device="cpu", progress=False)
    (stored.path / "model.pt").write_bytes(b"garbage")
    _interrupt(monkeypatch)
    with pytest.warns(UserWarning, match="unusable"), pytest.raises(KeyboardInterrupt):
        get_model(spec, device="cpu", progress=False)
    assert (stored.path / "metrics.json").is_file() and (stored.path / "model.pt").read_bytes() == b"garbage"


def test_a_crash_between_the_renames_of_a_replacement_is_recovered(home, monkeypatch):
    spec = ModelSpec(**TINY, epochs=1, seed=9)
    stored = get_model(spec, device="cpu", progress=False)
    previous = stored.path.with_name(stored.path.name + ".previous")
    stored.path.rename(previous)  # the state after the first rename of a replacement
    again = get_model(spec, device="cpu", progress=False)
    assert not again.trained and again.path.is_dir() and not previous.exists()
    _interrupt(monkeypatch, after=1)  # a staged run that completed but was never put in place
    staged = stored.path.with_name(stored.path.name + ".staging")
    with pytest.warns(UserWarning, match="beside it"), pytest.raises(KeyboardInterrupt):
        get_model(dataclasses.replace(spec, snapshot_epochs=(1,)), device="cpu", progress=False)
    assert (staged / "resume.pt").is_file() and not (staged / "metrics.json").exists()
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="beside it"):
        done = get_model(dataclasses.replace(spec, snapshot_epochs=(1,)), device="cpu", progress=False)
    assert done.trained and done.snapshot_epochs == (1,) and not staged.exists()


def test_concurrent_requests_train_once_and_the_second_loads(home, monkeypatch):
    import threading

    from modgraph import store

    spec = ModelSpec(**TINY, epochs=1, seed=10)
    trainings, real = [], store.train_model

    def counted(*args, **kwargs):
        trainings.append(1)
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "train_model", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_model(spec, device="cpu", progress=False)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trainings) == 1 and sorted(r.trained for r in results) == [False, True]
    assert _equal(_weights(results[0].model), _weights(results[1].model))


def test_model_lock_excludes_other_holders_until_released(home):
    import threading

    spec = ModelSpec(**TINY, epochs=1, seed=11)
    outcome = []
    with model_lock(spec) as folder:
        assert folder == model_dir(spec)
        with model_lock(spec):  # re-entrant in the holding thread
            pass

        def other():
            try:
                with model_lock(spec, timeout=0.2, progress=False):
                    outcome.append("acquired")
            except TimeoutError:
                outcome.append("timed out")

        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert outcome == ["timed out"]
    with model_lock(spec, timeout=0.2, progress=False):
        pass


def _train_or_load(spec: ModelSpec, start, results) -> None:
    """In a fresh process: wait for ``start``, get ``spec`` from the store, put (trained?, sha256 of its weights)."""
    torch.set_num_threads(1)
    start.wait()
    stored = get_model(spec, device="cpu", progress=False)
    digest = hashlib.sha256()
    for name, tensor in stored.model.state_dict().items():
        digest.update(name.encode() + tensor.numpy().tobytes())
    results.put((stored.trained, digest.hexdigest()))


@pytest.mark.slow
def test_two_processes_asking_for_one_model_train_it_once(home, tmp_path, monkeypatch):
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(REQUEST_LOG_ENV, str(log))
    spec = ModelSpec(**TINY, epochs=2, seed=12)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.SimpleQueue()
    workers = [ctx.Process(target=_train_or_load, args=(spec, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=3600)  # a worker that died before the barrier leaves the other waiting
    assert [worker.exitcode for worker in workers] == [0, 0]
    (trained_a, weights_a), (trained_b, weights_b) = results.get(), results.get()
    assert sorted([trained_a, trained_b]) == [False, True] and weights_a == weights_b
    assert sorted(json.loads(line)["trained"] for line in log.read_text().splitlines()) == [False, True]


def test_a_killed_holders_lock_is_free_at_once(home, tmp_path):
    spec = ModelSpec(**TINY, epochs=1, seed=13)
    held = tmp_path / "held"
    code = (f"import pathlib, time\nfrom modgraph.store import ModelSpec, model_lock\n"
            f"with model_lock(ModelSpec(**{TINY!r}, epochs=1, seed=13)):\n"
            f"    pathlib.Path({str(held)!r}).touch()\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code])
    try:
        while not held.exists():
            assert holder.poll() is None, "the holder died before it took the lock"
            time.sleep(0.05)
        with pytest.raises(TimeoutError):
            with model_lock(spec, timeout=0.2, progress=False):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    with model_lock(spec, timeout=5, progress=False) as folder:
        assert folder.with_name(folder.name + ".lock").exists()  # the file stays; only a live holder counts


def test_load_checkpoint_checks_what_the_file_records(stored, tmp_path):
    from modgraph.store import checkpoint_info

    info = checkpoint_info(stored.path)
    assert (info["arch"], info["dataset"], info["num_classes"], info["width"]) == ("resnet20", "digits", 10, 0.25)
    assert checkpoint_info(stored.path / "snapshots" / "epoch_001.pt")["dataset"] == "digits"
    model = load_checkpoint(stored.path, "resnet20", dataset="DIGITS", num_classes=10, width=0.25, device="cpu")
    assert _equal(_weights(model), _weights(stored.model))
    with pytest.raises(ValueError, match="trained with dataset 'digits', not 'cifar10'"):
        load_checkpoint(stored.path, dataset="cifar10")
    with pytest.raises(ValueError, match="num_classes 10, not 100; width 0.25, not 1.0"):
        load_checkpoint(stored.path / "model.pt", num_classes=100, width=1.0)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello\n")
    for bad in ("empty.pt", "text.pt"):
        with pytest.raises(ValueError, match="cannot read checkpoint"):
            load_checkpoint(tmp_path / bad, "resnet20")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="store folder .*folder holds no model.pt"):
        load_checkpoint(tmp_path / "folder")


def test_initial_weights_are_the_stores_starting_point(tmp_path, monkeypatch):
    from modgraph import store

    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    seen = {}

    class Stop(Exception):
        pass

    def fake_train(model, *args, **kwargs):
        seen["state"] = copy.deepcopy(model.state_dict())
        raise Stop

    monkeypatch.setattr(store, "train_model", fake_train)
    spec = store.ModelSpec("vgg11", "digits", recipe="smoke", seed=5, width=0.0625)
    with pytest.raises(Stop):
        store.get_model(spec, device="cpu", progress=False)
    initial = store.resolve(store.Initial(spec), device="cpu", progress=False)
    mine = initial.model.state_dict()
    assert initial.meta == {"spec": spec.canonical(), "test_accuracy": None} and not initial.model.training
    assert mine.keys() == seen["state"].keys()
    assert all(torch.equal(mine[k], seen["state"][k]) for k in mine)
    child = store.ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625, parent=spec)
    with pytest.raises(ValueError, match="parent"):
        store.Initial(child)
    with pytest.raises(ValueError, match="source must be a Trained, Snapshot, Initial or WeightsFile, got str"):
        store.resolve("initial")


def test_accuracy_percent():
    from modgraph import store

    assert store.accuracy_percent({"final_test_acc": 0.9478}) == 94.78
    assert store.accuracy_percent({}) is None
    assert math.isclose(store.accuracy_percent({"final_test_acc": 1}), 100.0)


def test_check_specs_wants_a_list_of_specs():
    from modgraph import store

    spec = store.ModelSpec("vgg11", "digits", recipe="smoke")
    assert store.check_specs((spec,)) == [spec]
    for bad in ([], "vgg11", spec, ["vgg11"]):
        with pytest.raises(ValueError, match="specs must be a non-empty list of ModelSpec"):
            store.check_specs(bad)


def test_weights_sources_are_keyed_by_what_determines_the_weights(tmp_path):
    import hashlib

    from modgraph import store

    spec = store.ModelSpec("vgg11", "digits", recipe="smoke")
    keys = [store.Trained(spec).key(), store.Initial(spec).key(), store.Snapshot(spec, 1).key(),
            store.Snapshot(spec, 2).key()]
    assert [k["kind"] for k in keys] == ["trained", "initial", "snapshot", "snapshot"]
    assert all(k["spec"] == spec.canonical() for k in keys) and keys[2] != keys[3]
    assert (store.Snapshot(spec, 1).arch, store.Snapshot(spec, 1).dataset) == ("vgg11", "digits")
    missing = store.WeightsFile("tv_resnet18", str(tmp_path / "none.pth"), "imagenet50")
    with pytest.raises(ValueError, match="no weights file"):
        missing.key()
    path = tmp_path / "w.pth"
    path.write_bytes(b"abc")
    assert store.WeightsFile("tv_resnet18", str(path), "imagenet50").key() == {
        "kind": "file", "arch": "tv_resnet18", "sha256": hashlib.sha256(b"abc").hexdigest()}
