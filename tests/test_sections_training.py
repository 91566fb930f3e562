"""Fig. 6(b) section: the dynamics record, its claims and the snapshot curves."""


import numpy as np
import pytest

from modgraph.curve import Curve, CurveSettings
from modgraph.sections import training as tr
from modgraph.sections.training import TrainingDynamics

# Q over 4 epochs (rows) and 3 layers (columns): flat first layer, rising last layer.
Q = np.array([[0.20, 0.10, 0.05],
              [0.21, 0.30, 0.40],
              [0.19, 0.40, 0.60],
              [0.20, 0.45, 0.80]])
ACC = np.array([10.0, 60.0, 75.0, 90.0])


def curve(row, layers=("a", "b", "c"), accuracy=None):
    return Curve(layers, [row, row], {"test_accuracy": accuracy})


def dynamics(q=Q, acc=ACC, epochs=None):
    epochs = tuple(range(len(q))) if epochs is None else epochs
    return TrainingDynamics("m", epochs, tuple(curve(r) for r in q), tuple(acc))


def test_dynamics_matrix_frame_and_round_trip():
    d = dynamics()
    np.testing.assert_allclose(d.q, Q)
    frame = d.to_frame()
    assert list(frame.columns) == ["epoch", "test accuracy (%)", "a", "b", "c"]
    np.testing.assert_allclose(frame[["a", "b", "c"]].to_numpy(), Q)
    back = TrainingDynamics.from_dict(d.to_dict())
    assert back.epochs == d.epochs and back.accuracy == d.accuracy and np.allclose(back.q, Q)


def test_dynamics_reject_inconsistent_parts():
    with pytest.raises(ValueError, match="strictly increasing"):
        dynamics(epochs=(0, 2, 1, 3))
    with pytest.raises(ValueError, match="one curve and one accuracy per epoch"):
        dynamics(acc=ACC[:3])
    mixed = (curve(Q[0]), curve(Q[1], layers=("x", "y", "z")))
    with pytest.raises(ValueError, match="same layers"):
        TrainingDynamics("m", (0, 1), mixed, (10.0, 20.0))


def test_claims_are_computed_from_the_measurements():
    shallow, deep = dynamics().claims(source="Fig. 6(b)")
    assert shallow.value == pytest.approx(tr.epoch_range_ratio(Q)) and shallow.holds
    assert deep.value == pytest.approx(tr.accuracy_correlation(Q, ACC)) and deep.holds
    flipped = dynamics(q=Q[:, ::-1]).claims(source="Fig. 6(b)")
    assert not flipped[0].holds and not flipped[1].holds
    short = dynamics(q=Q[:2], acc=ACC[:2]).claims(source="Fig. 6(b)", scope="m on digits")
    assert short[1].reason == "a correlation needs at least 3 epochs, got 2" and not short[1].holds
    assert short[0].claim.startswith("m on digits:")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A tiny VGG11 trained for 2 epochs on digits by the real store, snapshots 0..2 (one torch thread:
    a model this small only loses from more)."""
    import os

    import torch

    from modgraph.store import ModelSpec, get_model

    home = tmp_path_factory.mktemp("home")
    old, threads = os.environ.get("MODGRAPH_HOME"), torch.get_num_threads()
    os.environ["MODGRAPH_HOME"] = str(home)
    torch.set_num_threads(1)
    spec = ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625, epochs=2, snapshot_epochs=range(3))
    try:
        yield spec, get_model(spec, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
        if old is None:
            del os.environ["MODGRAPH_HOME"]
        else:
            os.environ["MODGRAPH_HOME"] = old


def test_snapshot_curves_equal_direct_curves_with_the_epochs_accuracy(stored, monkeypatch):
    from modgraph import cache, store
    from modgraph.curve import modularity_curve
    from modgraph.data import load_dataset
    from modgraph.store import Snapshot
    from modgraph.train import evaluate

    spec, model = stored
    test = load_dataset("digits", "test", progress=False)
    images, labels = test.tensors()
    d = tr.training_dynamics(spec, CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    assert d.epochs == (0, 1, 2) and d.arch == "vgg11"
    for epoch, c in zip(d.epochs, d.curves):
        direct = modularity_curve(model.snapshot(epoch), images, labels, n=40, k=3, repeats=2, seed=1, progress=False)
        np.testing.assert_allclose(c.array, direct.array)
        assert c.meta["epoch"] == epoch
    assert d.accuracy[0] == pytest.approx(round(100 * evaluate(model.snapshot(0), test)[0], 2))
    assert d.accuracy[1:] == tuple(round(100 * h["test_acc"], 2) for h in model.metrics["history"])

    def no_store(*args, **kwargs):
        raise AssertionError("cached curves must not load the model")

    monkeypatch.setattr(store, "get_model", no_store)
    again = tr.training_dynamics(spec, CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    assert again.to_dict() == d.to_dict()
    single = cache.curve(Snapshot(spec, 1), CurveSettings(n=40, k=3, repeats=2, seed=1), progress=False)
    assert single.values == d.curves[1].values


def test_epochs_beyond_the_saved_snapshots_are_refused(stored):
    from modgraph import cache
    from modgraph.store import ModelSpec, Snapshot

    spec, _ = stored
    with pytest.raises(ValueError, match="no snapshot of epoch 3 .* saved epochs: 0, 1, 2"):
        cache.curve(Snapshot(spec, 3), CurveSettings(n=40, k=3, repeats=1), progress=False)
    with pytest.raises(ValueError, match=r"snapshot_epochs \(0, 1, 2, 3\) must lie in 0..2"):
        ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625, epochs=2, snapshot_epochs=range(4))
    with pytest.raises(ValueError, match="at least 2 snapshot epochs"):
        tr.training_dynamics(ModelSpec("vgg11", "digits", recipe="smoke", width=0.0625, epochs=2,
                                       snapshot_epochs=(1,)), progress=False)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        Snapshot(spec, -1)
