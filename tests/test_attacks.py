import copy
import inspect
import math

import pytest
import torch
from torch import nn

from modgraph.attacks import (ATTACKS, AdversarialResult, AdversarialSettings, adversarial_examples, attack_params,
                              batched_single_pixel_attack)
from modgraph.compat import advertorch_attacks
from modgraph.curve import CurveSettings
from modgraph.models import CIFAR10_MEAN, CIFAR10_STD, Normalize

# Cheap settings for the slow attacks; every other parameter keeps its default.
FAST = {
    "cw": {"max_iterations": 20, "binary_search_steps": 4}, "jsma": {"gamma": 0.05},
    "localsearch": {"max_nb_seeds": 32}, "pgd": {"nb_iter": 10},
}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        Normalize(CIFAR10_MEAN, CIFAR10_STD), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 32 * 32, 10),
    ).eval()


@pytest.fixture(scope="module")
def data(model):
    """Six 32x32 images with the smallest top-2 logit margin of 200, labelled as the model predicts."""
    images = torch.rand(200, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(images)
    top = logits.topk(2, dim=1).values
    pick = (top[:, 0] - top[:, 1]).argsort()[:6]
    return images[pick], logits.argmax(dim=1)[pick]


def test_registry_and_unknown_attack(model, data):
    assert ATTACKS.names() == ["cw", "fgsm", "jsma", "localsearch", "onepixel", "pgd"]
    with pytest.raises(ValueError, match="valid choices: cw, fgsm, jsma, localsearch, onepixel, pgd"):
        adversarial_examples(model, *data, "deepfool", 2, progress=False)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_specs_are_advertorch_defaults(name):
    spec = ATTACKS.get(name)
    signature = inspect.signature(getattr(advertorch_attacks(), spec.advertorch_class)).parameters
    declared = set(spec.params) | set(spec.fixed) | {"predict"} | ({"num_classes"} if spec.num_classes else set())
    assert declared == set(signature)
    for key, value in {**spec.params, **spec.fixed}.items():
        assert signature[key].default == value, key
    assert set(spec.released_code) <= set(spec.params)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_fools_model_within_pixel_range(model, data, name):
    images, labels = data
    result = adversarial_examples(model, images, labels, name, 3, batch_size=3, overrides=FAST.get(name),
                                  progress=False)
    assert result.n_found == 3 and result.images.shape == (3, 3, 32, 32)
    assert result.images.min() >= 0 and result.images.max() <= 1
    with torch.no_grad():
        predicted = model(result.images).argmax(dim=1)
    assert torch.equal(predicted, result.predictions)
    assert (predicted != result.labels).all()
    assert torch.equal(result.clean, images[result.indices]) and torch.equal(result.labels, labels[result.indices])
    assert 0 < result.success_rate <= 1 and result.mean_l2 > 0 and result.mean_linf > 0
    assert result.params == attack_params(name, FAST.get(name))


def test_fgsm_perturbation_is_bounded_by_eps(model, data):
    result = adversarial_examples(model, *data, "fgsm", 6, overrides={"eps": 0.05}, progress=False)
    linf = (result.images - result.clean).flatten(1).abs().amax(dim=1)
    assert result.n_found > 0 and (linf <= 0.05 + 1e-6).all()
    assert math.isclose(result.mean_linf, float(linf.mean()), rel_tol=1e-6)


def test_same_seed_same_result_and_global_rng_untouched(model, data):
    state = torch.get_rng_state()
    first = adversarial_examples(model, *data, "pgd", 4, overrides=FAST["pgd"], seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    again = adversarial_examples(model, *data, "pgd", 4, overrides=FAST["pgd"], seed=3, progress=False)
    other = adversarial_examples(model, *data, "pgd", 4, overrides=FAST["pgd"], seed=4, progress=False)
    assert torch.equal(first.images, again.images) and torch.equal(first.indices, again.indices)
    assert not torch.equal(first.images, other.images)


def test_fewer_successes_than_requested_warns(model, data):
    images, labels = data
    wrong = labels.clone()
    wrong[3:] = (labels[3:] + 1) % 10  # three inputs misclassified: never attacked
    with pytest.warns(UserWarning, match="found 3 of 10"):
        result = adversarial_examples(model, images, wrong, "fgsm", 10, progress=False)
    assert (result.n_requested, result.n_found, result.n_attacked) == (10, 3, 3)
    assert result.indices.tolist() == [0, 1, 2]
    with pytest.warns(UserWarning, match="found 0 of 2"):
        none = adversarial_examples(model, images, labels, "fgsm", 2, overrides={"eps": 0}, progress=False)
    assert none.n_found == 0 and none.success_rate == 0 and math.isnan(none.mean_l2)


def test_stops_once_enough_found(model, data):
    result = adversarial_examples(model, *data, "fgsm", 2, batch_size=2, progress=False)
    assert (result.n_found, result.n_attacked) == (2, 2)


def test_overrides_are_validated(model, data):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) clip_min; valid choices: abort_early, binary_search_steps"):
        adversarial_examples(model, *data, "cw", 2, overrides={"clip_min": -1.0}, progress=False)
    with pytest.raises(ValueError, match="'nb_iter' must be an integer"):
        attack_params("pgd", {"nb_iter": 2.5})
    with pytest.raises(ValueError, match="'rand_init' must be True or False"):
        attack_params("pgd", {"rand_init": 1})
    params = attack_params("fgsm", {"eps": 1})
    assert params == {"eps": 1.0} and isinstance(params["eps"], float)


def test_bad_inputs_raise(model, data):
    images, labels = data
    with pytest.raises(ValueError, match=r"pixel space \[0, 1\]"):
        adversarial_examples(model, images * 2 - 1, labels, "fgsm", 2, progress=False)
    with pytest.raises(ValueError, match="labels must have shape"):
        adversarial_examples(model, images, labels[:2], "fgsm", 2, progress=False)
    with pytest.raises(ValueError, match="class indices in"):
        adversarial_examples(model, images, labels + 10, "fgsm", 2, progress=False)


def test_model_state_restored(model, data):
    model.train()
    result = adversarial_examples(model, *data, "fgsm", 2, progress=False)
    assert result.n_found == 2
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    model.eval()


def test_save_load_roundtrip(model, data, tmp_path):
    result = adversarial_examples(model, *data, "fgsm", 2, progress=False)
    result.save(tmp_path / "fgsm.pt")
    loaded = AdversarialResult.load(tmp_path / "fgsm.pt")
    assert torch.equal(loaded.images, result.images) and torch.equal(loaded.indices, result.indices)
    assert loaded.metrics() == result.metrics() and loaded.params == result.params
    assert loaded.code_version == result.code_version


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


@pytest.mark.parametrize("max_pixels", [1, 40, 100])
def test_batched_single_pixel_attack_returns_advertorchs_examples(model, data, max_pixels):
    double = copy.deepcopy(model).double()
    images, labels = data[0].double(), data[1]
    kwargs = {"max_pixels": max_pixels, "clip_min": 0.0, "clip_max": 1.0}
    torch.manual_seed(3)
    reference = advertorch_attacks().SinglePixelAttack(double, **kwargs).perturb(images, labels)
    after_reference = torch.random.get_rng_state()
    torch.manual_seed(3)
    batched = batched_single_pixel_attack()(double, **kwargs).perturb(images, labels)
    assert torch.equal(batched, reference)
    assert torch.equal(torch.random.get_rng_state(), after_reference)
    changed = (batched != images).flatten(1).any(dim=1)
    assert changed.any() or max_pixels == 1
