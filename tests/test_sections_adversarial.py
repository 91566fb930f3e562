"""Fig. 6(a) section: the peak gap, the study, its tables, panels and claims."""

import math

import pytest

from modgraph.cache import trained_specs
from modgraph.curve import CurveSettings
from modgraph.sections import adversarial as adv
from modgraph.attacks import AdversarialSettings


def test_study_tables_panels_and_claims(ridge_store):
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


def test_study_rejects_bad_arguments(ridge_store):
    with pytest.raises(ValueError, match="settings must be an AdversarialSettings"):
        adv.adversarial_study(trained_specs(["vgg11"], "digits", recipe="smoke"), {"n": 5}, progress=False)
    with pytest.raises(ValueError, match="specs must be a non-empty list of ModelSpec"):
        adv.adversarial_study(["vgg11"], AdversarialSettings(("fgsm",), CurveSettings(n=5)), progress=False)
