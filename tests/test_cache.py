"""The compute cache: keyed by config and code, curves of stored models, studies, t-SNE."""

import json
import math
import sys

import numpy as np
import pytest

from modgraph import cache, paths
from modgraph.curve import CurveSettings


def test_cached_computes_once_per_config(home):
    calls = []

    def compute():
        calls.append(1)
        return {"q": [0.1, float("nan")]}

    first = cache.cached("curves", {"k": 3}, compute)
    assert cache.cached("curves", {"k": 3}, compute) == first == {"q": [0.1, None]}
    assert len(calls) == 1
    cache.cached("curves", {"k": 5}, compute)
    assert len(calls) == 2
    stored = json.loads(next((home / "data/cache/curves").glob("*.json")).read_text())
    assert {"config", "code_version", "value"} <= set(stored)


@pytest.mark.parametrize("corrupt", [b"{\"kind\": \"curv", b"", b"[1, 2]", b"{\"value\": 1}"])
def test_corrupted_cache_entry_is_recomputed_with_a_warning(home, corrupt):
    calls = []

    def compute():
        calls.append(1)
        return {"q": 0.5}

    cache.cached("corrupt", {"k": 7}, compute)
    path = next((home / "data/cache/corrupt").glob("*.json"))
    path.write_bytes(corrupt)
    with pytest.warns(UserWarning, match=f"cache entry {path} is unreadable or corrupted"):
        assert cache.cached("corrupt", {"k": 7}, compute) == {"q": 0.5}
    assert len(calls) == 2 and cache.cached("corrupt", {"k": 7}, compute) == {"q": 0.5} and len(calls) == 2
    path.unlink()


def test_cache_key_follows_the_source_of_the_named_code(home, tmp_path, monkeypatch):
    module = tmp_path / "fakemath_for_cache.py"
    module.write_text("Q = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    cache.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    cache.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    assert len(calls) == 1
    before = cache.entry_key({"k": 3}, ["fakemath_for_cache"])
    module.write_text("Q = 2\n")  # the maths changed: the cached value is stale
    assert cache.entry_key({"k": 3}, ["fakemath_for_cache"]) != before
    cache.cached("curves", {"k": 3}, lambda: calls.append(1) or 1, code=["fakemath_for_cache"])
    assert len(calls) == 2
    sys.modules.pop("fakemath_for_cache", None)


def test_cached_rejects_bad_kind_and_unserialisable_values(home):
    with pytest.raises(ValueError, match="cache kind"):
        cache.cached("../up", {}, lambda: 1)
    with pytest.raises(ValueError, match="not JSON serialisable"):
        cache.cached("curves", {}, lambda: object())
    assert not (paths.cache_dir() / "curves").exists() or not any((paths.cache_dir() / "curves").iterdir())


class FakeStored:
    def __init__(self, model, acc=0.5):
        self.model = model
        self.metrics = {"final_test_acc": acc}


@pytest.fixture
def fake_store(home, monkeypatch):
    """get_model returns an untrained tiny VGG11 (no training in unit tests); counts its calls."""
    from modgraph import store
    from modgraph.models import create_model

    calls = []

    def get_model(spec, device=None, progress=True):
        calls.append(spec)
        return FakeStored(create_model(spec.arch, width=1 / 16, seed=spec.seed).eval())

    monkeypatch.setattr(store, "get_model", get_model)
    return calls


def test_curve_of_trained_weights_equals_direct_computation_and_is_reused(fake_store):
    from modgraph.curve import modularity_curve
    from modgraph.data import load_dataset
    from modgraph.models import create_model
    from modgraph.store import ModelSpec, Trained

    spec = ModelSpec("vgg11", "digits", recipe="smoke", width=1 / 16)
    curve = cache.curve(Trained(spec), CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    images, labels = load_dataset("digits", "test", progress=False).tensors()
    direct = modularity_curve(create_model("vgg11", width=1 / 16, seed=0).eval(), images, labels, n=40, k=3,
                              repeats=2, seed=1, progress=False)
    np.testing.assert_allclose(curve.array, direct.array, rtol=1e-6, atol=1e-9)
    assert curve.layers == direct.layers
    assert curve.meta["test_accuracy"] == 50.0 and curve.meta["model"] == "vgg11"
    again = cache.curve(Trained(spec), CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    assert again == curve and len(fake_store) == 1  # second call: from the cache, no model needed
    cache.curve(Trained(spec), CurveSettings(n=40, k=5, repeats=2, seed=1), progress=False)
    assert len(fake_store) == 2


def test_model_curves_reports_absent_data_sets(fake_store):
    study = cache.model_curves(["vgg11"], ["digits", "imagenet50"], CurveSettings(n=30, repeats=1), recipe="smoke",
                                width=1 / 16, progress=False)
    assert list(study.curves) == ["digits"] and list(study.curves["digits"]) == ["vgg11"]
    assert "imagenet" in study.missing["imagenet50"]
    panels = study.panels()
    assert list(panels) == ["digits", "imagenet50"] and panels["imagenet50"] == study.missing["imagenet50"]
    note = study._repr_markdown_()
    assert ":::{admonition} imagenet50: not measured\n:class: warning\n" in note
    assert "data/imagenet/val" in note and str(paths.root()) not in note  # project-relative paths only
    verdicts = study.claims(source="Fig. 4")
    assert len(verdicts) == 6 and all(not c.holds for c in verdicts[3:])
    assert verdicts[3].reason == study.missing["imagenet50"]
    table = study.accuracy_table()
    assert table.loc[0, "test accuracy (ours, %)"] == 50.0 and math.isnan(table.loc[0, "paper (%)"])
    assert json.loads(json.dumps(study.to_dict()))["missing"] == study.missing


def test_model_curves_keeps_the_requested_snapshots(fake_store):
    cache.model_curves(["vgg11", "vgg13"], ["digits"], CurveSettings(n=30, repeats=1), recipe="smoke",
                        width=1 / 16, snapshots={"vgg13": 2}, progress=False)
    assert [(s.arch, s.snapshot_epochs) for s in fake_store] == [("vgg11", ()), ("vgg13", (0, 1, 2))]
    fake_store.clear()
    cache.model_curves(["vgg11"], ["digits"], CurveSettings(n=31, repeats=1), recipe="smoke", width=1 / 16,
                        snapshots={"vgg13": 2}, progress=False)  # a run restricted to fewer models
    assert [(s.arch, s.snapshot_epochs) for s in fake_store] == [("vgg11", ())]
    with pytest.raises(ValueError, match="unknown model 'vgg99'; valid choices"):
        cache.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg99": 2})
    with pytest.raises(ValueError, match=r"snapshots\['vgg11'\] must be the last snapshot epoch, an int in 0..2"):
        cache.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg11": -1})
    with pytest.raises(ValueError, match=r"int in 0..2 \(recipe 'smoke' trains 2 epochs\), got 5"):
        cache.model_curves(["vgg11"], ["digits"], recipe="smoke", snapshots={"vgg11": 5}, progress=False)
    assert cache.check_snapshots({"vgg11": 5}, recipe="smoke", epochs=5) == {"vgg11": 5}


def test_accuracy_table_marks_quoted_values():
    from modgraph.curve import Curve

    c = Curve(("a", "b"), [[0.1, 0.2]], {"test_accuracy": 93.1})
    table = cache.CurveStudy(("cifar10",), {"cifar10": {"resnet18": c, "resnet20": c}}).accuracy_table()
    rows = {(r["data set"], r["model"]): r for r in table.to_dict(orient="records")}
    assert len(rows) == 3 * 9 + 1  # all of Table B2, and the measured model it does not list
    assert rows["cifar10", "resnet18"]["paper (%)"] == 94.78 and rows["cifar10", "resnet18"]["layers"] == 2
    assert rows["cifar10", "resnet18"]["paper source"] == "Table B2 (quoted)"
    assert rows["cifar10", "resnet18"]["test accuracy (ours, %)"] == 93.1
    assert math.isnan(rows["cifar10", "vgg13"]["test accuracy (ours, %)"])  # quoted, not measured
    assert rows["cifar100", "vgg11"]["paper (%)"] == 66.87 and rows["imagenet50", "resnet152"]["paper (%)"] == 87.89
    assert math.isnan(rows["cifar10", "resnet20"]["paper (%)"]) and rows["cifar10", "resnet20"]["paper source"] == ""


def test_pretrained_curves_say_what_is_missing(home):
    study = cache.pretrained_curves(["tv_resnet18"], "imagenet50", progress=False)
    assert study.curves == {} and "imagenet" in study.missing["imagenet50"]
    none = cache.pretrained_curves([], "imagenet50")
    assert none.missing == {"imagenet50": "no models were requested in this profile"}


def test_cached_embeddings_use_the_first_curve_sample(fake_store, monkeypatch):
    from modgraph.data import load_dataset, sample_indices
    from modgraph import embeddings
    from modgraph.store import ModelSpec

    monkeypatch.setattr(embeddings, "layer_embeddings",
                        lambda model, images, **kw: {"only": images.reshape(len(images), -1)[:, :2].numpy()})
    emb = cache.cached_embeddings(ModelSpec("vgg11", "digits", recipe="smoke"), CurveSettings(n=25, seed=2),
                                   progress=False)
    data = load_dataset("digits", "test", progress=False)
    index = sample_indices(len(data), 25, 1, 2)[0]
    np.testing.assert_array_equal(emb.labels, data.labels[index])
    pixels = data.images[index].transpose(0, 3, 1, 2).reshape(25, -1)[:, :2] / 255
    np.testing.assert_allclose(emb.layers["only"], pixels, rtol=1e-6)
    assert emb.classes == data.classes
