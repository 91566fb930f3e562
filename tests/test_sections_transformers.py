"""Chapter 07 helpers: joining curve studies, the accuracy table and the ViT claims."""

import numpy as np
import pytest

from modgraph.claims import depth_spearman, last_layer_gap
from modgraph.curve import Curve
from modgraph.cache import CurveStudy
from modgraph.sections import transformers
from modgraph.sections.training import TrainingDynamics


def curve(means, accuracy=None):
    layers = tuple(f"l{i}" for i in range(len(means)))
    return Curve(layers, [means, means], {"test_accuracy": accuracy})


RISING = curve([0.1, 0.2, 0.3, 0.5], accuracy=80.0)
FALLING = curve([0.5, 0.4, 0.2], accuracy=60.0)


def dynamics():
    q = [[0.1, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.25, 0.4, 0.6]]
    return TrainingDynamics("vit", (0, 1, 2), tuple(curve(row) for row in q), (10.0, 50.0, 70.0))


def test_joined_keeps_every_curve_and_note_in_order():
    vit = CurveStudy(("d",), {"d": {"vit": RISING}})
    cnns = CurveStudy(("d", "absent"), {"d": {"cnn": FALLING}}, {"absent": "no files"}, {"big": "too big"})
    study = transformers.joined([vit, cnns])
    assert study.datasets == ("d", "absent")
    assert list(study.curves["d"]) == ["vit", "cnn"] and "absent" not in study.curves
    assert study.missing == {"absent": "no files"} and study.skipped == {"big": "too big"}
    frame = transformers.accuracy_frame(study)
    assert frame.to_dict(orient="records") == [
        {"data set": "d", "model": "vit", "layers": 4, "test accuracy (%)": 80.0},
        {"data set": "d", "model": "cnn", "layers": 3, "test accuracy (%)": 60.0}]


def test_claims_are_the_vits_own_measurements():
    study = CurveStudy(("d",), {"d": {"vit": RISING, "cnn": FALLING}})
    imagenet = CurveStudy(("imagenet50",), {"imagenet50": {"tv_vit_b_16": FALLING}})
    claims = transformers.transformer_claims(study, "vit", dynamics(), imagenet, source="beyond")
    assert len(claims) == 6 and {c.source for c in claims} == {"beyond"}
    rise, last, _, deep, vit_in_rise, _ = claims
    assert rise.value == pytest.approx(depth_spearman(np.asarray(RISING.mean))) and rise.holds
    assert last.value == pytest.approx(last_layer_gap(np.asarray(RISING.mean))) and last.holds
    assert deep.holds  # the last layer's Q rises with accuracy over the 3 epochs
    assert "tv_vit_b_16" in vit_in_rise.claim and not vit_in_rise.holds  # the ImageNet curve falls


def test_unmeasured_parts_say_why():
    study = CurveStudy(("cifar10",), {}, {"cifar10": "cifar10 files are absent"})
    imagenet = CurveStudy(("imagenet50",), {}, {"imagenet50": "no ImageNet images"})
    claims = transformers.transformer_claims(study, "vit", dynamics(), imagenet, source="beyond")
    unmeasured = [c for c in claims if c.reason]
    assert [c.reason for c in unmeasured[:2]] == ["cifar10 files are absent"] * 2
    assert [c.reason for c in unmeasured[-2:]] == ["no ImageNet images"] * 2
    assert not any(c.holds for c in unmeasured)
