"""Modularity curves: equivalence with precomputed features, sweeps, determinism, the Curve artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from modgraph.curve import Curve, CurveSettings, curve_from_features, modularity_curve, modularity_sweep
from modgraph.data import sample_indices
from modgraph.features import iter_layer_features
from modgraph.graph import knn_modularity


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyNet(nn.Module):
    """Two conv units; ``block`` taps the ReLUs, ``conv`` the convolutions. Counts images seen."""

    def __init__(self, width: int = 4, classes: int = 4) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1, self.relu1 = nn.Conv2d(3, width, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU()
        self.head = nn.Linear(width, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        units = {"block": ("relu1", "relu2"), "conv": ("conv1", "conv2")}
        if tap not in units:
            raise ValueError(f"unknown tap {tap!r}; valid choices: block, conv")
        return [(name, getattr(self, name)) for name in units[tap]]


def _data(n: int = 120, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Images (n, 3, 8, 8) in [0, 1] whose class sets a colour pattern; labels (n,)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    patterns = torch.rand(classes, 3, 8, 8, generator=gen)
    images = (0.6 * patterns[labels] + 0.4 * torch.rand(n, 3, 8, 8, generator=gen)).clamp(0, 1)
    return images, labels.numpy()


def _curve(**kwargs) -> Curve:
    images, labels = _data()
    options = {"n": 30, "k": 3, "repeats": 3, "seed": 1, "device": "cpu", "progress": False, **kwargs}
    return modularity_curve(TinyNet(), images, labels, **options)


def test_curve_equals_per_layer_modularity_of_the_same_samples() -> None:
    images, labels = _data()
    curve = modularity_curve(TinyNet(), images, labels, n=30, k=3, repeats=3, seed=1, device="cpu", progress=False)
    sets = sample_indices(len(images), 30, 3, seed=1)
    features = dict(iter_layer_features(TinyNet(), images, device="cpu"))
    expected = [[knn_modularity(features[layer][idx], labels[idx], k=3) for layer in curve.layers] for idx in sets]
    assert curve.layers == ("relu1", "relu2")
    np.testing.assert_array_equal(curve.array, np.array(expected))
    np.testing.assert_allclose(curve.mean, np.mean(expected, axis=0))
    np.testing.assert_allclose(curve.std, np.std(expected, axis=0, ddof=1))
    from_features = curve_from_features(features, labels, sets, k=3)
    np.testing.assert_array_equal(from_features.array, curve.array)
    assert from_features.meta["n"] == 30 and from_features.meta["repeats"] == 3


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    first = _curve()
    assert _curve().values == first.values
    assert _curve(seed=2).values != first.values


def test_tap_and_similarity_are_passed_through() -> None:
    block, conv, pearson = _curve(), _curve(tap="conv"), _curve(similarity="pearson")
    assert conv.layers == ("conv1", "conv2") and conv.meta["tap"] == "conv"
    assert conv.values != block.values
    assert pearson.values != block.values and pearson.meta["similarity"] == "pearson"


def test_sweep_takes_its_samples_and_layers_from_curve_settings() -> None:
    images, labels = _data()
    settings = CurveSettings(n=20, k=4, repeats=2, seed=3, similarity="pearson")
    by_value = modularity_sweep(TinyNet(), images, labels, settings, ks=(1, 4), device="cpu", progress=False)
    by_keywords = modularity_sweep(TinyNet(), images, labels, ns=(20,), ks=(1, 4), similarities=("pearson",),
                                   repeats=2, seed=3, device="cpu", progress=False)
    assert [c.values for c in by_value] == [c.values for c in by_keywords]
    single = modularity_curve(TinyNet(), images, labels, settings, device="cpu", progress=False)
    assert by_value[1].values == single.values
    with pytest.raises(ValueError, match="give either settings or seed, not both"):
        modularity_sweep(TinyNet(), images, labels, settings, seed=1, progress=False)


def test_sweep_equals_individual_curves_from_one_feature_pass() -> None:
    images, labels = _data()
    model = TinyNet()
    curves = modularity_sweep(model, images, labels, ns=(20, 30), ks=(1, 4), similarities=("cosine", "pearson"),
                              repeats=2, seed=3, device="cpu", progress=False)
    sweep_seen = model.seen
    settings = [(c.meta["similarity"], c.meta["n"], c.meta["k"]) for c in curves]
    assert settings == [(s, n, k) for s in ("cosine", "pearson") for n in (20, 30) for k in (1, 4)]
    single_seen = 0
    for curve, (similarity, n, k) in zip(curves, settings):
        single_model = TinyNet()
        single = modularity_curve(single_model, images, labels, n=n, k=k, repeats=2, seed=3, similarity=similarity,
                                  device="cpu", progress=False)
        single_seen += single_model.seen
        assert curve.values == single.values
    assert sweep_seen < single_seen / 4


def test_meta_records_settings_provenance_and_caller_fields() -> None:
    curve = _curve(meta={"dataset": "toy", "arch": "tiny"})
    for key in ("model", "dataset", "arch", "n", "k", "repeats", "similarity", "seed", "tap", "code_version",
                "wall_time_s", "device"):
        assert key in curve.meta, key
    assert curve.meta["model"] == "TinyNet" and curve.meta["device"] == "cpu" and curve.meta["n"] == 30
    assert curve.meta["wall_time_s"] >= curve.meta["graph_time_s"] > 0


def test_curve_json_round_trip(tmp_path) -> None:
    curve = _curve(meta={"dataset": "toy", "classes": np.int64(4), "shape": (8, 8)})
    path = tmp_path / "curves" / "c.json"
    curve.to_json(path)
    again = Curve.from_json(path)
    assert again == curve
    assert Curve.from_dict(curve.to_dict()) == curve
    written = json.loads(path.read_text())
    assert written["meta"]["shape"] == [8, 8] and written["meta"]["classes"] == 4
    np.testing.assert_allclose(written["std"], curve.std)
    assert not list(tmp_path.glob("curves/.*tmp"))


def test_curve_summary_frame_and_table() -> None:
    curve = Curve(("a", "b"), [[0.1, 0.5], [0.3, 0.7]], {"model": "m", "dataset": "d", "n": 2, "k": 1})
    np.testing.assert_allclose(curve.mean, [0.2, 0.6])
    np.testing.assert_allclose(curve.std, [np.sqrt(0.02), np.sqrt(0.02)])
    frame = curve.to_frame()
    assert list(frame.columns) == ["depth", "layer", "mean", "std", "q0", "q1"]
    assert frame["q1"].tolist() == [0.3, 0.7]
    table = curve.table()
    assert "modularity curve of m on d (n=2, k=1)" in table and "0.6000" in table and "b" in table
    single = Curve(("a",), [[0.4]])
    assert single.std.tolist() == [0.0] and single.repeats == 1


def test_curve_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="L = 2 layers"):
        Curve(("a", "b"), [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="finite"):
        Curve(("a",), [[float("nan")]])
    with pytest.raises(ValueError, match="missing values"):
        Curve.from_dict({"layers": ["a"]})


def test_bad_requests_raise_clear_errors() -> None:
    images, labels = _data()
    model = TinyNet()
    kwargs = {"device": "cpu", "progress": False}
    with pytest.raises(ValueError, match="only 120 are available"):
        modularity_curve(model, images, labels, n=50, repeats=3, **kwargs)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k < n, got k=10, n=10"):
        modularity_curve(model, images, labels, n=10, k=10, **kwargs)
    with pytest.raises(ValueError, match="give either settings or k, not both"):
        modularity_curve(model, images, labels, CurveSettings(n=10), k=3, **kwargs)
    with pytest.raises(ValueError, match="one per image"):
        modularity_curve(model, images, labels[:-1], n=10, **kwargs)
    with pytest.raises(ValueError, match="valid choices: cosine, pearson"):
        modularity_curve(model, images, labels, n=10, similarity="l2", **kwargs)
    with pytest.raises(ValueError, match="may not set k, n"):
        modularity_curve(model, images, labels, n=10, meta={"n": 3, "k": 1}, **kwargs)
    with pytest.raises(ValueError, match="ks must be"):
        modularity_sweep(model, images, labels, ns=10, ks=(), **kwargs)
    assert model.seen == 0
    features = {"x": torch.rand(12, 5)}
    with pytest.raises(ValueError, match="same size"):
        curve_from_features(features, np.arange(12) % 2, [np.arange(4), np.arange(4, 9)])
    with pytest.raises(ValueError, match=r"lie in \[0, 12\)"):
        curve_from_features(features, np.arange(12) % 2, [np.arange(8, 13)])
    with pytest.raises(ValueError, match="has 12 rows but there are 10 labels"):
        curve_from_features(features, np.arange(10) % 2, [np.arange(5)])


def test_settings_give_the_curve_of_the_same_keywords() -> None:
    images, labels = _data()
    settings = CurveSettings(n=30, k=4, repeats=2, seed=5, similarity="pearson")
    by_settings = modularity_curve(TinyNet(), images, labels, settings, device="cpu", progress=False)
    by_keywords = modularity_curve(TinyNet(), images, labels, n=30, k=4, repeats=2, seed=5, similarity="pearson",
                                   device="cpu", progress=False)
    assert by_settings.values == by_keywords.values
    assert settings.to_dict() == {"n": 30, "k": 4, "repeats": 2, "seed": 5, "similarity": "pearson", "tap": "block"}


@pytest.mark.parametrize("fields, problem", [
    ({"n": 0}, "n must be an int >= 1"), ({"k": 2.0}, "k must be an int >= 1"), ({"repeats": True}, "repeats"),
    ({"seed": -1}, "seed must be an int >= 0"), ({"n": 3, "k": 3}, "k < n"),
    ({"similarity": "l2"}, "valid choices: cosine, pearson"), ({"tap": "pixel"}, "valid choices"),
])
def test_bad_settings_name_the_problem(fields, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        CurveSettings(**fields)
