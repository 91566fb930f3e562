"""The compute cache: keyed by config and code, curves of stored models, studies, t-SNE."""

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch

from modgraph import attacks, cache, paths
from modgraph.attacks import AdversarialSettings, adversarial_examples
from modgraph.cka import compare_layers
from modgraph.curve import CurveSettings
from modgraph.models import create_model
from modgraph.data import load_dataset, sample_indices


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


def test_sweep_equals_the_curve_of_each_setting_and_is_reused(fake_store):
    from modgraph.store import ModelSpec, Trained

    source, base = Trained(ModelSpec("vgg11", "digits", recipe="smoke", width=1 / 16)), CurveSettings(n=40, repeats=2)
    curves = cache.sweep(source, base, ns=(20, 40), ks=(2, 5), similarities=("cosine", "pearson"), progress=False)
    assert len(fake_store) == 1 and len(curves) == 8
    for curve, (sim, n, k) in zip(curves, [(s, n, k) for s in ("cosine", "pearson") for n in (20, 40) for k in (2, 5)]):
        single = cache.curve(source, CurveSettings(n=n, k=k, repeats=2, similarity=sim), progress=False)
        assert curve.values == single.values and (curve.meta["n"], curve.meta["k"]) == (n, k)
    assert cache.sweep(source, base, ns=(20, 40), ks=(2, 5), similarities=("cosine", "pearson"),
                       progress=False) == curves
    assert len(fake_store) == 1 + 8  # each single curve resolved the model once; the repeated sweep did not
    assert cache.sweep(source, base, progress=False)[0].values == cache.curve(source, base, progress=False).values


def test_sweep_checks_its_axes_before_asking_for_the_model(fake_store):
    from modgraph.store import ModelSpec, Trained

    source = Trained(ModelSpec("vgg11", "digits", recipe="smoke", width=1 / 16))
    with pytest.raises(ValueError, match=r"invalid \(n, k\) settings: \[\(10, 10\)\]"):
        cache.sweep(source, CurveSettings(n=40), ns=(10, 40), ks=(3, 10), progress=False)
    with pytest.raises(ValueError, match="unknown similarity 'l1'; valid choices: cosine, pearson"):
        cache.sweep(source, CurveSettings(n=40), similarities=("cosine", "l1"), progress=False)
    assert fake_store == []


@pytest.mark.parametrize("entry", [cache.curve, cache.sweep, cache.comparison])
def test_entry_points_reject_what_is_not_a_weights_source(home, entry):
    with pytest.raises(ValueError, match="source must be a Trained, Snapshot, Initial or WeightsFile, got str"):
        entry("vgg11", CurveSettings(n=10), progress=False)
    with pytest.raises(ValueError, match="source must be a Trained"):
        cache.curve("vgg11", CurveSettings(n=10), dataset="digits", progress=False)


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


def counting(monkeypatch):
    """Wrap the attack entry point used by the cache; returns the list of its calls."""
    calls = []
    original = attacks.adversarial_examples

    def wrapped(*args, **kwargs):
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(attacks, "adversarial_examples", wrapped)
    return calls


def test_key_follows_what_determines_the_examples(ridge_store):
    spec, base = ridge_store.spec, AdversarialSettings(("fgsm", "pgd"), CurveSettings(n=5))
    key = cache.adversarial_key(spec, "fgsm", base)
    assert key == cache.adversarial_key(spec, "FGSM", AdversarialSettings(("fgsm",), CurveSettings(n=5),
                                                                        overrides={"fgsm": {"eps": 0.3}}))
    assert key == cache.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5, k=2, repeats=1)))
    changed = [
        cache.adversarial_key(spec, "pgd", base),
        cache.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=6))),
        cache.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5, seed=1))),
        cache.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=3)),
        cache.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5),
                                                              overrides={"fgsm": {"eps": 0.1}})),
        cache.adversarial_key(spec.__class__("vgg11", "digits", recipe="smoke", seed=1), "fgsm", base),
    ]
    assert len({key, *changed}) == 1 + len(changed)


def test_cached_examples_equal_a_direct_attack_and_are_reused(ridge_store, monkeypatch):
    calls = counting(monkeypatch)
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=6, seed=2), pool=3, overrides={"fgsm": {"eps": 0.1}})
    first = cache.adversarial(ridge_store.spec, "fgsm", settings, progress=False)
    again = cache.adversarial(ridge_store.spec, "fgsm", settings, progress=False)
    assert calls == ["fgsm"]
    test = load_dataset("digits", "test", progress=False)
    images, labels = test.tensors()
    pool = sample_indices(len(test), 18, 1, 2)[0]
    direct = adversarial_examples(ridge_store.model, images[pool], labels[pool], "fgsm", 6, batch_size=6, seed=2,
                                  overrides={"eps": 0.1}, progress=False)
    assert first.n_found == 6 and again.n_found == 6
    for result in (first, again):
        assert torch.equal(result.images, direct.images) and torch.equal(result.labels, direct.labels)
        assert torch.equal(result.indices, torch.from_numpy(pool)[direct.indices])
        assert torch.equal(result.clean, images[result.indices]) and torch.equal(result.labels, labels[result.indices])
    files = sorted((paths.cache_dir() / "adversarial").iterdir())
    assert [f.suffix for f in files] == [".json", ".pt"]
    stored = json.loads(files[0].read_text())
    assert stored["config"]["params"] == {"eps": 0.1} and stored["metrics"]["n_found"] == 6
    assert stored["code_version"]


def test_shortfall_warns_computed_and_cached(ridge_store):
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=2, overrides={"fgsm": {"eps": 1e-4}})
    for _ in range(2):
        with pytest.warns(UserWarning, match="fgsm: found 0 of 5 requested"):
            result = cache.adversarial(ridge_store.spec, "fgsm", settings, progress=False)
        assert result.n_found == 0 and result.n_requested == 5 and math.isnan(result.mean_l2)


def test_attack_curves_equal_direct_curves_of_both_image_sets(ridge_store):
    from modgraph.curve import modularity_curve

    settings = AdversarialSettings(("fgsm",), CurveSettings(n=12), pool=2, overrides={"fgsm": {"eps": 0.2}})
    result = cache.adversarial(ridge_store.spec, "fgsm", settings, progress=False)
    curves = cache.attack_curves(ridge_store.spec, result, CurveSettings(k=3), progress=False)
    for kind, images in (("adversarial", result.images), ("clean", result.clean)):
        direct = modularity_curve(ridge_store.model, images, result.labels, n=result.n_found, k=3, repeats=1,
                                  progress=False)
        np.testing.assert_allclose(curves[kind].array, direct.array)
        assert curves[kind].layers == ("flat", "fc") and curves[kind].meta["images"] == kind
    calls = len(ridge_store.calls)
    again = cache.attack_curves(ridge_store.spec, result, CurveSettings(k=3), progress=False)
    assert len(ridge_store.calls) == calls and again["adversarial"].values == curves["adversarial"].values


def test_attack_curves_need_more_examples_than_neighbours(ridge_store):
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=2, overrides={"fgsm": {"eps": 1e-4}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cache.adversarial(ridge_store.spec, "fgsm", settings, progress=False)
    with pytest.raises(ValueError, match="0 adversarial example\\(s\\) cannot form a 3-NN graph"):
        cache.attack_curves(ridge_store.spec, result, CurveSettings(k=3), progress=False)


def test_comparison_per_weights_source_computes_once(stub_store):
    from modgraph import store
    from modgraph.data import load_dataset

    spec = store.ModelSpec("resnet20", "digits", recipe="smoke", seed=0, width=0.25)
    data = load_dataset("digits", "test", progress=False)
    trained = create_model("resnet20", num_classes=10, width=0.25, mean=data.mean, std=data.std, seed=7)
    calls = stub_store(trained, 0.25)
    settings = CurveSettings(n=12, k=3, repeats=1, seed=0)
    first = cache.comparison(store.Trained(spec), settings, progress=False)
    assert cache.comparison(store.Trained(spec), settings, progress=False).to_dict() == first.to_dict() and len(calls) == 1
    assert first.meta["weights"] == "trained" and first.meta["test_accuracy"] == 25.0
    images, labels = data.tensors()
    direct = compare_layers(store.resolve(store.Initial(spec)).model, images, labels, settings, progress=False)
    control = cache.comparison(store.Initial(spec), settings, progress=False)
    assert len(calls) == 1 and control.meta["weights"] == "initial"
    np.testing.assert_allclose(control.cka, direct.cka)
    assert control.curve.values == direct.curve.values
