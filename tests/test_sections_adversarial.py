"""Fig. 6(a) helpers: settings, the adversarial-example cache, paired curves, the study and its claims."""

import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modgraph import paths
from modgraph.attacks import adversarial_examples
from modgraph.cache import trained_specs
from modgraph.curve import CurveSettings
from modgraph.data import load_dataset, sample_indices
from modgraph.sections import adversarial as adv
from modgraph.sections.adversarial import AdversarialSettings


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
def store(tmp_path, monkeypatch):
    """``get_model`` returns a ridge classifier of the digits training set; records its calls."""
    from modgraph import store as store_module

    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path))
    model = Ridge(*load_dataset("digits", "train", progress=False).tensors()).eval()
    calls = []

    def get_model(spec, device=None, progress=True):
        calls.append(spec)
        return SimpleNamespace(model=model, metrics={"final_test_acc": 0.9})

    monkeypatch.setattr(store_module, "get_model", get_model)
    return SimpleNamespace(model=model, calls=calls, spec=store_module.ModelSpec("vgg11", "digits", recipe="smoke"))


def counting(monkeypatch):
    """Wrap the attack entry point used by the cache; returns the list of its calls."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args[3])
        return adversarial_examples(*args, **kwargs)

    monkeypatch.setattr(adv, "adversarial_examples", wrapped)
    return calls


def test_peak_gap_is_the_difference_of_maxima():
    assert adv.peak_gap([0.1, 0.5, 0.3], [0.2, 0.4, 0.7]) == pytest.approx(-0.2)
    assert adv.peak_gap(np.array([0.9, 0.1]), np.array([0.2, 0.8])) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="two non-empty 1-D curves of equal length"):
        adv.peak_gap([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="two non-empty 1-D curves of equal length"):
        adv.peak_gap([[0.1, 0.2]], [[0.1, 0.2]])


def test_settings_check_names_and_sizes():
    with pytest.raises(ValueError, match="unknown attack 'deepfool'; valid choices: cw, fgsm, jsma, localsearch"):
        AdversarialSettings(("fgsm", "deepfool"))
    with pytest.raises(ValueError, match="overrides names attacks that are not requested: cw; requested: fgsm"):
        AdversarialSettings(("fgsm",), overrides={"cw": {"max_iterations": 5}})
    with pytest.raises(ValueError, match=r"fgsm: unknown parameter\(s\) steps; valid choices: eps"):
        AdversarialSettings(("fgsm",), overrides={"fgsm": {"steps": 5}})
    with pytest.raises(ValueError, match="samples names attacks that are not requested: jsma"):
        AdversarialSettings(("fgsm",), samples={"jsma": 3})
    with pytest.raises(ValueError, match=r"batches\['fgsm'\] must be an int >= 1"):
        AdversarialSettings(("fgsm",), batches={"fgsm": 0})
    with pytest.raises(ValueError, match="k must satisfy 1 <= k < n"):
        AdversarialSettings(("fgsm",), CurveSettings(n=3, k=3))
    with pytest.raises(ValueError, match="attacks must not repeat"):
        AdversarialSettings(("fgsm", "FGSM"))
    with pytest.raises(ValueError, match="unknown similarity"):
        AdversarialSettings(("fgsm",), CurveSettings(similarity="manhattan"))


def test_settings_resolve_per_attack_sizes_and_parameters():
    s = AdversarialSettings(("FGSM", "jsma", "cw"), CurveSettings(n=50), samples={"JSMA": 6}, batches={"jsma": 1},
                            overrides={"cw": {"max_iterations": 20}, "fgsm": {"eps": 0.3}})
    assert s.attacks == ("fgsm", "jsma", "cw")
    assert [s.n_for(a) for a in s.attacks] == [50, 6, 50]
    assert [s.batch_size(a) for a in s.attacks] == [50, 1, 50]
    assert s.params("cw")["max_iterations"] == 20 and s.params("cw")["binary_search_steps"] == 9
    table = s.params_table().set_index("attack")
    assert table.loc["cw", "changed from the defaults"] == "max_iterations=20"
    assert table.loc["fgsm", "changed from the defaults"] == ""
    assert table.loc["jsma", "AdverTorch class"] == "JacobianSaliencyMapAttack"


def test_key_follows_what_determines_the_examples(store):
    spec, base = store.spec, AdversarialSettings(("fgsm", "pgd"), CurveSettings(n=5))
    key = adv.adversarial_key(spec, "fgsm", base)
    assert key == adv.adversarial_key(spec, "FGSM", AdversarialSettings(("fgsm",), CurveSettings(n=5),
                                                                        overrides={"fgsm": {"eps": 0.3}}))
    assert key == adv.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5, k=2, repeats=1)))
    changed = [
        adv.adversarial_key(spec, "pgd", base),
        adv.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=6))),
        adv.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5, seed=1))),
        adv.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=3)),
        adv.adversarial_key(spec, "fgsm", AdversarialSettings(("fgsm",), CurveSettings(n=5),
                                                              overrides={"fgsm": {"eps": 0.1}})),
        adv.adversarial_key(spec.__class__("vgg11", "digits", recipe="smoke", seed=1), "fgsm", base),
    ]
    assert len({key, *changed}) == 1 + len(changed)


def test_cached_examples_equal_a_direct_attack_and_are_reused(store, monkeypatch):
    calls = counting(monkeypatch)
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=6, seed=2), pool=3, overrides={"fgsm": {"eps": 0.1}})
    first = adv.cached_adversarial(store.spec, "fgsm", settings, progress=False)
    again = adv.cached_adversarial(store.spec, "fgsm", settings, progress=False)
    assert calls == ["fgsm"]
    test = load_dataset("digits", "test", progress=False)
    images, labels = test.tensors()
    pool = sample_indices(len(test), 18, 1, 2)[0]
    direct = adversarial_examples(store.model, images[pool], labels[pool], "fgsm", 6, batch_size=6, seed=2,
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


def test_shortfall_warns_computed_and_cached(store):
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=2, overrides={"fgsm": {"eps": 1e-4}})
    for _ in range(2):
        with pytest.warns(UserWarning, match="fgsm: found 0 of 5 requested"):
            result = adv.cached_adversarial(store.spec, "fgsm", settings, progress=False)
        assert result.n_found == 0 and result.n_requested == 5 and math.isnan(result.mean_l2)


def test_attack_curves_equal_direct_curves_of_both_image_sets(store):
    from modgraph.curve import modularity_curve

    settings = AdversarialSettings(("fgsm",), CurveSettings(n=12), pool=2, overrides={"fgsm": {"eps": 0.2}})
    result = adv.cached_adversarial(store.spec, "fgsm", settings, progress=False)
    curves = adv.attack_curves(store.spec, result, CurveSettings(k=3), progress=False)
    for kind, images in (("adversarial", result.images), ("clean", result.clean)):
        direct = modularity_curve(store.model, images, result.labels, n=result.n_found, k=3, repeats=1,
                                  progress=False)
        np.testing.assert_allclose(curves[kind].array, direct.array)
        assert curves[kind].layers == ("flat", "fc") and curves[kind].meta["images"] == kind
    calls = len(store.calls)
    again = adv.attack_curves(store.spec, result, CurveSettings(k=3), progress=False)
    assert len(store.calls) == calls and again["adversarial"].values == curves["adversarial"].values


def test_attack_curves_need_more_examples_than_neighbours(store):
    settings = AdversarialSettings(("fgsm",), CurveSettings(n=5), pool=2, overrides={"fgsm": {"eps": 1e-4}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = adv.cached_adversarial(store.spec, "fgsm", settings, progress=False)
    with pytest.raises(ValueError, match="0 adversarial example\\(s\\) cannot form a 3-NN graph"):
        adv.attack_curves(store.spec, result, CurveSettings(k=3), progress=False)


def test_study_tables_panels_and_claims(store):
    settings = AdversarialSettings(("fgsm", "pgd"), CurveSettings(n=10, repeats=2, seed=0), pool=2,
                                   overrides={"fgsm": {"eps": 0.2}, "pgd": {"eps": 1e-4, "nb_iter": 2}})
    with pytest.warns(UserWarning, match="pgd: found 0 of 10"):
        study = adv.adversarial_study(trained_specs(["vgg11"], "digits", recipe="smoke"), settings, progress=False)
    attacks = study.attack_table().set_index("attack")
    assert attacks.loc["fgsm", "found"] == 10 and attacks.loc["fgsm", "note"] == ""
    assert attacks.loc["pgd", "found"] == 0 and attacks.loc["pgd", "note"] == "only 0 of 10 found"
    peaks = study.peak_table().set_index("attack")
    fgsm = study.outcomes[0]
    assert peaks.loc["fgsm", "gap"] == pytest.approx(adv.peak_gap(fgsm.adversarial.mean, fgsm.clean.mean))
    assert math.isnan(peaks.loc["pgd", "gap"])
    assert list(study.panels()["vgg11"]) == ["clean (10 test samples)", "fgsm"]
    pairs = study.pair_panels()
    assert list(pairs["vgg11, fgsm"]) == ["adversarial", "clean (same images)"]
    assert "needs more than 3" in pairs["vgg11, pgd (0 of 10)"]
    claims = study.claims(source="Fig. 6(a)")
    assert claims[0].value == pytest.approx(fgsm.gap) and claims[0].holds == (fgsm.gap < 0)
    assert not claims[1].holds and "0 adversarial example(s) found" in claims[1].reason
    assert set(study.results("vgg11")) == {"fgsm", "pgd"}
    with pytest.raises(ValueError, match="unknown model 'vgg16'; valid choices: vgg11"):
        study.results("vgg16")
    assert study.to_dict()["outcomes"][1]["adversarial"] is None


def test_study_rejects_bad_arguments(store):
    with pytest.raises(ValueError, match="settings must be an AdversarialSettings"):
        adv.adversarial_study(trained_specs(["vgg11"], "digits", recipe="smoke"), {"n": 5}, progress=False)
    with pytest.raises(ValueError, match="specs must be a non-empty list of ModelSpec"):
        adv.adversarial_study(["vgg11"], AdversarialSettings(("fgsm",), CurveSettings(n=5)), progress=False)
