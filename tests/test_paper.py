"""The paper's facts: quoted numbers agree with each other, thresholds are stated once."""

import inspect

from modgraph import claims, paper, prune
from modgraph.sections import pruning


def test_quoted_accuracy_is_table_b2():
    assert paper.quoted_accuracy("CIFAR10", "ResNet18") == 94.78  # also quoted in the paper's text
    assert paper.quoted_accuracy("cifar10", "vgg16") == 93.63
    assert paper.quoted_accuracy("cifar100", "resnet152") == 78.64
    assert paper.quoted_accuracy("imagenet50", "vgg11") == 83.97
    assert paper.quoted_accuracy("cifar10", "resnet20") is None  # not one of the paper's nine models
    assert paper.quoted_accuracy("imagenet50", "tv_resnet18") is None  # torchvision's, not the paper's
    for table in paper.PAPER_TABLE_B2.values():
        assert tuple(table) == paper.PAPER_FIG4_ARCHS


def test_the_plateau_rise_is_the_one_default_of_plateaus_and_pruning():
    assert inspect.signature(prune.redundant_layers).parameters["threshold"].default == paper.PLATEAU_RISE
    assert pruning.PruneSettings(recipe="smoke", finetune_epochs=1).threshold == paper.PLATEAU_RISE
    steps = [0.0, 0.005, 0.02, 0.029]  # rises 0.005, 0.015, 0.009: two below 0.01
    assert claims.plateau_fraction(steps) == 2 / 3
