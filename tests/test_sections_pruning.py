"""Pruning section helpers: pure quantities, variant checks, claims, weight transfer, store round trips."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from modgraph import paper
from modgraph.curve import Curve, CurveSettings
from modgraph.models import create_model
from modgraph.prune import authors_complexity, complexity, prunable_layers, prune
from modgraph.sections import pruning as pr
from modgraph.sections.pruning import FamilyStudy, PruneSettings, VariantStudies
from modgraph.store import INITIALISERS, ModelSpec

LAYERS = ("stage1.0", "stage2.0", "stage3.0", "stage3.1", "stage4.0", "stage4.1")


pytestmark = pytest.mark.usefixtures("single_thread")


def curve(means, accuracy, layers=LAYERS, spread=0.002) -> Curve:
    """A two-repeat curve with the given layer means and test accuracy (%)."""
    q = np.asarray(means, dtype=float)
    return Curve(tuple(layers[: q.size]), [q - spread, q + spread], {"test_accuracy": accuracy})


def test_settings_validate_and_build_specs():
    settings = PruneSettings(recipe="smoke", finetune_epochs=1, width=0.125, seed=2)
    parent = settings.parent_spec("vgg11", "digits")
    child = settings.variant_spec(parent, "vgg11_2")
    assert (child.arch, child.parent, child.init, child.epochs, child.seed, child.width) == (
        "vgg11_2", parent, "transfer", 1, 2, 0.125)
    with pytest.raises(ValueError, match="'vgg19_2' is not 'vgg11'"):
        settings.variant_spec(parent, "vgg19_2")
    assert settings.for_parents() is settings
    wide = settings.for_parents(0.5, 3)
    wide_parent = wide.parent_spec("vgg11", "digits")
    wide_child = wide.variant_spec(wide_parent, "vgg11_2")
    assert (wide_parent.width, wide_parent.epochs, wide_child.width, wide_child.epochs) == (0.5, 3, 0.5, 1)
    assert replace(wide, width=0.125, epochs=None) == settings == settings.for_parents(None, None)
    with pytest.raises(ValueError, match="width must be"):
        settings.for_parents(width=0.0)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        settings.for_parents(epochs=0)
    with pytest.raises(ValueError, match="unknown recipe 'slow'; valid choices: fast, paper, quick, smoke"):
        PruneSettings(recipe="slow", finetune_epochs=1)
    with pytest.raises(ValueError, match="finetune_epochs must be an int >= 1"):
        PruneSettings(recipe="smoke", finetune_epochs=0)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        PruneSettings(recipe="smoke", finetune_epochs=1, threshold=float("nan"))
    with pytest.raises(ValueError, match="curve must be a CurveSettings"):
        PruneSettings(recipe="smoke", finetune_epochs=1, curve={"similarity": "cosine"})


def family(accuracies=(90.0, 89.8, 89.5), shrinking=True) -> FamilyStudy:
    """vgg11 with a plateau over its last three layers; variants lose layers from the back."""
    parent = [0.1, 0.3, 0.5, 0.505, 0.51, 0.515]
    variant1 = [0.1, 0.3, 0.5, 0.505, 0.6]
    variant2 = [0.1, 0.3, 0.5, 0.6]
    if not shrinking:
        variant2 = [0.1, 0.1, 0.1, 0.1]
    names = ("stage1.0", "stage2.0", "stage3.0", "stage3.1", "stage4.0", "stage4.1")
    curves = {"vgg11": curve(parent, accuracies[0], names),
              "v1": curve(variant1, accuracies[1], ("stage1.0", "stage2.0", "stage3.0", "stage3.1", "stage4.0")),
              "v2": curve(variant2, accuracies[2], ("stage1.0", "stage2.0", "stage3.0", "stage4.0"))}
    return FamilyStudy("vgg11", "cifar10", curves, {"v1": ("stage4.1",), "v2": ("stage3.1", "stage4.1")}, 0.01)


def test_family_table_and_claims():
    table = family().table()
    assert list(table["model"]) == ["vgg11", "v1", "v2"]
    assert list(table["removed layers"]) == [0, 1, 2]
    assert table["Delta-Q of removed layers"].tolist() == pytest.approx([0.0, 0.005, 0.010])
    assert table["change vs parent (pp)"].tolist() == pytest.approx([0.0, -0.2, -0.5])
    assert list(table["plateau layers"]) == [3, 1, 0]  # the last layer counts: the parent ends on a plateau
    plateau, accuracy = family().claims(source="Fig. 9")
    assert plateau.holds and plateau.value == pytest.approx(-1.0)
    assert accuracy.holds and accuracy.value == pytest.approx(0.5)
    plateau, accuracy = family(accuracies=(90.0, 91.5, 89.0), shrinking=False).claims(source="Fig. 9")
    assert not plateau.holds and not accuracy.holds and accuracy.value == pytest.approx(1.0)
    _, gained = family(accuracies=(90.0, 93.0, 89.9)).claims(source="Fig. 9")
    assert gained.holds and gained.value == pytest.approx(0.1)
    lonely = FamilyStudy("vgg11", "cifar10", {"vgg11": family().curves["vgg11"]}, {}, 0.01)
    plateau, accuracy = lonely.claims(source="Fig. 9")
    assert not plateau.holds and "at least 2 variants" in plateau.reason
    assert not accuracy.holds and accuracy.reason == "no variant was measured"


def test_fig10_points_claims_and_missing_data():
    studies = VariantStudies(("cifar10", "cifar100"), {"cifar10": {"vgg11": family()}},
                             {"cifar100": "no CIFAR-100 files under data/"})
    points = pr.delta_q_points(studies)
    measured = points[points["source"] == "measured"]
    assert measured["model"].tolist() == ["v1", "v2"]
    assert measured["accuracy drop (%)"].tolist() == pytest.approx([0.2, 0.5])
    quoted = points[points["source"] == "paper (quoted)"]
    assert sorted(map(tuple, quoted[["Delta-Q", "accuracy drop (%)"]].to_numpy())) == sorted(
        paper.PAPER_FIG10_POINTS["cifar10"] + paper.PAPER_FIG10_POINTS["cifar100"])
    claims = pr.drop_claims(points, studies.datasets, missing=studies.missing, source="Fig. 10")
    assert [c.holds for c in claims] == [False, False]
    assert "3 variants" in claims[0].reason and claims[1].reason == "no CIFAR-100 files under data/"
    third = pd.DataFrame([{"data set": "cifar10", "model": "v3", "Delta-Q": 0.3, "accuracy drop (%)": 2.0,
                           "source": "measured"}])
    claims = pr.drop_claims(pd.concat([points, third]), ["cifar10"], missing={}, source="Fig. 10")
    assert claims[0].holds and claims[0].value > 0.9
    panels = studies.panels()
    assert panels["cifar100"] == "no CIFAR-100 files under data/"
    assert list(panels["vgg11 on cifar10"]) == ["vgg11 (90.00 %)", "v1 (89.80 %)", "v2 (89.50 %)"]


def test_pruned_spec_initialiser_transfers_the_kept_layers():
    parent_spec = ModelSpec("resnet20", "digits", recipe="smoke", width=0.25)
    removed = ["layer1.1", "layer3.1"]
    spec = pr.pruned_spec(parent_spec, removed, PruneSettings(recipe="smoke", finetune_epochs=1))
    assert dict(spec.overrides) == {"depths": (2, 3, 2)} and spec.parent == parent_spec and spec.epochs == 1
    assert spec.removed == ("layer1.1", "layer3.1") and spec.init == "transfer"
    parent = create_model("resnet20", width=0.25, seed=0).eval()
    child = create_model("resnet20", width=0.25, seed=1, **dict(spec.overrides)).eval()
    INITIALISERS.get(spec.init)(parent, child, spec.removed)
    expected = prune(parent, removed)
    for key, value in expected.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), key
    # the parent's layer1.2 became the child's layer1.1: a name-based transfer would have kept layer1.1
    assert torch.equal(child.layer1[1].conv1.weight, parent.layer1[2].conv1.weight)
    with pytest.raises(ValueError, match="non-empty list"):
        pr.pruned_spec(parent_spec, [], PruneSettings(recipe="smoke", finetune_epochs=1))
    with pytest.raises(ValueError, match="cannot remove stem"):
        pr.pruned_spec(parent_spec, ["stem"], PruneSettings(recipe="smoke", finetune_epochs=1))


SMOKE = PruneSettings(recipe="smoke", epochs=1, finetune_epochs=1, width=0.125,
                      curve=CurveSettings(n=40, k=3, repeats=2))


def test_family_study_fine_tunes_variants_from_the_stored_parent(module_home):
    studies = pr.variant_studies({"vgg11": ["vgg11_1"]}, ["digits", "cifar100"], SMOKE,
                                 paper=paper.PAPER_FIG10, progress=False)
    study = studies.studies["digits"]["vgg11"]
    assert list(study.curves) == ["vgg11", "vgg11_1"] and study.removed == {"vgg11_1": ("stage5.1",)}
    assert len(study.curves["vgg11_1"].layers) == len(study.curves["vgg11"].layers) - 1
    assert all(0.0 <= study.accuracy(m) <= 100.0 for m in study.curves)
    assert set(studies.missing) == {"cifar100"} and studies.omitted == {"vgg11": ("vgg11_2", "vgg11_3")}
    again = pr.family_study("vgg11", ["vgg11_1"], "digits", SMOKE, progress=False)
    assert again.curves["vgg11_1"].values == study.curves["vgg11_1"].values


def test_prune_by_curve_removes_the_redundant_layers_and_counts_the_savings(module_home):
    parent = SMOKE.parent_spec("resnet20", "digits")
    everything = replace(SMOKE, threshold=10.0)
    result = pr.prune_by_curve(parent, everything, progress=False)
    model = create_model("resnet20", width=0.125)
    assert set(result.removed) <= set(prunable_layers(model)) and result.removed
    assert len(result.removed) + len(result.refused) == len(result.verdicts)
    assert result.after.params == complexity(prune(model, list(result.removed))).params
    assert 0 < result.reduction["params_pct"] < 100 and 0 < result.reduction["flops_pct"] < 100
    assert result.pruned_accuracy is not None and result.parent_accuracy is not None
    table = result.table()
    assert (table["source"] == "paper's Table 1 (quoted)").sum() == len(paper.PAPER_TABLE1)
    assert table.loc[1, "FLOPs reduction (%)"] == pytest.approx(result.reduction["flops_pct"])
    assert result.claims(source="Table 1")[0].holds

    nothing = pr.prune_by_curve(parent, replace(SMOKE, threshold=-10.0), progress=False)
    assert nothing.removed == () and nothing.pruned_accuracy is None and nothing.reduction["flops_pct"] == 0.0
    saves, keeps = nothing.claims(source="Table 1")
    assert not saves.holds and not keeps.holds and keeps.reason == "no layer was removed"
    assert result.authors == {}  # the authors released no pruned model for digits
    with_authors = replace(result, dataset="cifar10", authors=authors_complexity("cifar10", 10, (1, 3, 32, 32)))
    row = with_authors.table().iloc[2]
    assert row["method"].startswith("resnet56_authors_cifar10") and "(2, 3, 6) of resnet56's (9, 9, 9)" in row["method"]
    assert row["parameters"] == 487_002 and math.isnan(row["accuracy (%)"])
