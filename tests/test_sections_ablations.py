"""Ablation helpers: pure quantities, settings validation, curves equal to direct ones, claims, caching."""

from __future__ import annotations

from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest

from modgraph.curve import Curve, CurveSettings, modularity_curve
from modgraph.models import create_model
from modgraph.sections import ablations as abl
from modgraph.sections.ablations import AblationSettings, ModelAblation


pytestmark = pytest.mark.usefixtures("single_thread")


def test_settings_are_normalised_and_validated():
    s = AblationSettings(CurveSettings(n=50, k=3, similarity="Cosine"), ns=[40, 20, 40], small_ks=[5, 3],
                         large_ks=(30, 10), alternative="Pearson")
    assert s.ns == (20, 40) and s.small_ks == (3, 5) and s.large_ks == (10, 30) and s.curve.similarity == "cosine"
    assert s.ks == (3, 5, 10, 30) and s.alternative == "pearson"
    assert AblationSettings.from_dict(s.to_dict()) == s and s.to_dict()["n"] == 50
    with pytest.raises(ValueError, match=r"every k must be < n = 50.*\[60\]"):
        AblationSettings(CurveSettings(n=50), ns=(20, 50), large_ks=(10, 60))
    with pytest.raises(ValueError, match="smallest of ns"):
        AblationSettings(CurveSettings(n=50, k=3), ns=(3, 50), large_ks=(10, 20))
    with pytest.raises(ValueError, match="alternative must differ.*valid choices: pearson"):
        AblationSettings(alternative="cosine")
    with pytest.raises(ValueError, match="unknown similarity 'euclid'; valid choices: cosine, pearson"):
        AblationSettings(alternative="euclid")
    with pytest.raises(ValueError, match="curve must be a CurveSettings"):
        AblationSettings({"n": 50})
    with pytest.raises(ValueError, match="at least 2 distinct"):
        AblationSettings(small_ks=(3, 3))
    with pytest.raises(ValueError, match="ns must be a list"):
        AblationSettings(ns=100)


@pytest.fixture
def stored_vgg(stub_store):
    """A VGG11 spec on digits whose stub store returns an untrained-by-seed-9 model recorded at 50 %."""
    from modgraph import store
    from modgraph.data import load_dataset

    spec = store.ModelSpec("vgg11", "digits", recipe="smoke", seed=0, width=0.0625)
    data = load_dataset("digits", "test", progress=False)
    trained = create_model("vgg11", num_classes=10, width=0.0625, mean=data.mean, std=data.std, seed=9)
    return SimpleNamespace(spec=spec, model=trained, data=data, calls=stub_store(trained, 0.5))


DIGITS = AblationSettings(CurveSettings(n=24, k=3, repeats=2, seed=1), ns=(12, 24), small_ks=(3, 5), large_ks=(6, 9))


def test_every_ablation_curve_equals_the_direct_curve_of_its_setting(stored_vgg):
    from modgraph import store

    images, labels = stored_vgg.data.tensors()
    result = abl.model_ablation(stored_vgg.spec, DIGITS, progress=False)
    start = store.resolve(store.Initial(stored_vgg.spec)).model

    def direct(m, **kw):
        return modularity_curve(m, images, labels, repeats=2, seed=1, progress=False, **kw).array

    model = stored_vgg.model
    np.testing.assert_allclose(result.by_n[12].array, direct(model, n=12, k=3))
    np.testing.assert_allclose(result.by_k[9].array, direct(model, n=24, k=9))
    np.testing.assert_allclose(result.reference.array, direct(model, n=24, k=3))
    np.testing.assert_allclose(result.alternative.array, direct(model, n=24, k=3, similarity="pearson"))
    np.testing.assert_allclose(result.untrained.array, direct(start, n=24, k=3))
    assert result.by_n[24].array.tolist() == result.reference.array.tolist()  # same samples, same setting
    assert result.untrained.meta["test_accuracy"] is None and result.alternative.meta["similarity"] == "pearson"
    assert result.meta["test_accuracy"] == 50.0 and result.model == "vgg11"
    back = ModelAblation.from_dict(result.to_dict())
    assert back.settings == DIGITS and back.by_n[12].values == result.by_n[12].values
    assert back.alternative.values == result.alternative.values and sorted(back.by_k) == list(DIGITS.ks)


def test_ablation_curves_are_cached_per_sweep(stored_vgg):
    first = abl.model_ablation(stored_vgg.spec, DIGITS, progress=False)
    calls = len(stored_vgg.calls)
    again = abl.model_ablation(stored_vgg.spec, DIGITS, progress=False)
    assert len(stored_vgg.calls) == calls and again.to_dict() == first.to_dict()
    changed = abl.model_ablation(stored_vgg.spec, replace(DIGITS, large_ks=(6, 7)), progress=False)
    assert len(stored_vgg.calls) == calls + 1  # only the k sweep is new
    assert changed.by_n[12].values == first.by_n[12].values and changed.by_k[7].values != first.by_k[9].values
    with pytest.raises(ValueError, match="settings must be an AblationSettings"):
        abl.model_ablation(stored_vgg.spec, asdict(DIGITS), progress=False)


def synthetic(last_by_k: dict[int, float], *, untrained_range: float = 0.05, pearson_shift: float = 0.01,
              early_by_n: dict[int, float] | None = None) -> ModelAblation:
    s = AblationSettings(CurveSettings(n=100, k=3, repeats=1), ns=(50, 100), small_ks=(3, 5),
                         large_ks=tuple(last_by_k))
    base = np.array([0.1, 0.2, 0.4, 0.6, 0.8, 0.9])

    def curve(values):
        return Curve(tuple(f"l{i}" for i in range(6)), [list(values)])

    by_k = {k: curve(base) for k in s.ks}
    for k, last in last_by_k.items():
        by_k[k] = curve(np.r_[base[:-1], last])
    early = early_by_n or {50: 0.1, 100: 0.1}
    by_n = {n: curve(np.r_[early[n], early[n], base[2:]]) for n in s.ns}
    flat = np.linspace(0.3, 0.3 + untrained_range, 6)
    return ModelAblation("m", s, by_n, by_k, curve(base + pearson_shift), curve(flat))


def claim_values(result: ModelAblation) -> dict[str, tuple[float, bool]]:
    return {c.source + ":" + c.claim.split(": ", 1)[1]: (c.value, c.holds) for c in result.claims()}


def test_claims_are_computed_from_the_curves():
    good = claim_values(synthetic({10: 0.88, 20: 0.85, 40: 0.8}, early_by_n={50: 0.05, 100: 0.1}))
    assert good["Fig. 7:a smaller N lowers the modularity of early layers"] == (pytest.approx(0.05), True)
    assert good["Fig. 7:curves for small k nearly overlap"] == (0.0, True)
    assert good["Fig. B11:the last layer's Q decreases as k grows"] == (pytest.approx(-0.03), True)
    assert good["Fig. B11:Q still increases with depth for every large k"][1]
    assert good["Fig. B12:pearson and cosine similarity give nearly the same curve"] == (pytest.approx(0.01), True)
    assert good["Fig. B13:the curve of the untrained model is nearly flat"] == (pytest.approx(0.0625), True)
    assert all(holds for _, holds in good.values())
    bad = claim_values(synthetic({10: 0.8, 20: 0.85, 40: 0.7}, untrained_range=0.4, pearson_shift=0.2))
    assert bad["Fig. B11:the last layer's Q decreases as k grows"] == (pytest.approx(0.05), False)
    assert not bad["Fig. B13:the curve of the untrained model is nearly flat"][1]
    assert not bad["Fig. B12:pearson and cosine similarity give nearly the same curve"][1]
    assert not bad["Fig. 7:a smaller N lowers the modularity of early layers"][1]  # equal early Q: no decrease


def test_panels_and_summaries():
    result = synthetic({10: 0.88, 20: 0.85})
    assert list(result.panel("large_k")) == ["k = 10", "k = 20"]
    assert list(result.panel("similarity")) == ["cosine", "pearson"]
    assert list(result.panel("initialisation")) == ["trained", "initial weights"]
    assert result.summary("large_k", "last") == {10: pytest.approx(0.88), 20: pytest.approx(0.85)}
    assert result.summary("n", "early") == {50: pytest.approx(0.1), 100: pytest.approx(0.1)}
    with pytest.raises(ValueError, match="unknown ablation panel 'depth'; valid choices: initialisation, large_k"):
        result.panel("depth")
    with pytest.raises(ValueError, match="unknown layer summary 'first'; valid choices: early, last"):
        result.summary("n", "first")


def test_reference_table_reads_the_reference_and_untrained_curves():
    result = synthetic({10: 0.88, 20: 0.85})
    row = abl.reference_table({"m": result}).iloc[0]
    assert row["layers"] == 6 and row["Q last layer"] == pytest.approx(0.9)
    assert row["Q first layer, initial weights"] == pytest.approx(0.3)
    assert row["Q last layer, initial weights"] == pytest.approx(0.35)


def test_divergence_table_finds_the_layer_where_curves_differ_most():
    result = synthetic({10: 0.88, 20: 0.85})
    layers = result.reference.layers
    result.by_k[5] = Curve(layers, [[0.1, 0.2, 0.3, 0.6, 0.8, 0.92]])  # 0.1 below k = 3 at l2, 0.02 above at l5
    result = replace(result, alternative=Curve(layers, [[0.1, 0.2, 0.4, 0.6, 0.87, 0.9]]))
    table = abl.divergence_table({"m": result}).set_index("compared")
    assert list(table.index) == ["50, 100", "3, 5", "cosine, pearson"]
    small_k = table.loc["3, 5"]
    assert (small_k["layer of largest spread"], small_k["depth"]) == ("l2", "3 of 6")
    assert small_k["largest spread"] == pytest.approx(0.1) and small_k["reference Q there"] == pytest.approx(0.4)
    assert small_k["spread at the last layer"] == pytest.approx(0.02)
    similarity = table.loc["cosine, pearson"]
    assert similarity["layer of largest spread"] == "l4" and similarity["largest spread"] == pytest.approx(0.07)
    assert table.loc["50, 100", "largest spread"] == pytest.approx(0.0)
    assert (table["largest spread"] >= table["spread at the last layer"]).all()


def test_agreement_study_measures_the_reference_samples_once(stored_vgg):
    from modgraph.agreement import layer_agreement

    images, labels = stored_vgg.data.tensors()
    first = abl.agreement_study([stored_vgg.spec], DIGITS, progress=False)["vgg11"]
    calls = len(stored_vgg.calls)
    again = abl.agreement_study([stored_vgg.spec], DIGITS, progress=False)["vgg11"]
    assert len(stored_vgg.calls) == calls and again.to_dict() == first.to_dict()  # read from the cache
    direct = layer_agreement(stored_vgg.model, images, labels, DIGITS.curve, ranks=max(DIGITS.small_ks),
                             similarities=("cosine", "pearson"))
    for similarity in ("cosine", "pearson"):
        np.testing.assert_allclose(first.values[similarity], direct.values[similarity])
    assert first.layers == abl.model_ablation(stored_vgg.spec, DIGITS, progress=False).reference.layers
