"""Fig. 6(a) example grid: the pixels shown are the examples given, captions name the classes."""

import math

import numpy as np
import pytest
import torch

from modgraph import provenance
from modgraph.attacks import AdversarialResult
from modgraph.plots.adversarial import example_grid

CLASSES = ("zero", "one", "two")


def result(n, name="fgsm", seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 3, 8, 8, generator=g)
    adv = (clean + 0.1 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    labels = torch.arange(n) % 3
    return AdversarialResult(name, adv, clean, labels, (labels + 1) % 3, torch.arange(n), n, n, 1.0,
                             math.nan, math.nan, 0.0, {}, seed, provenance.code_version())


def test_pairs_show_the_clean_and_adversarial_pixels_with_captions():
    r = result(3)
    fig = example_grid({"fgsm": r, "pgd": result(2, "pgd", 1)}, CLASSES, per_attack=2, title="Fig. 6(a) (paper): x")
    axes = np.array(fig.axes).reshape(2, 4)
    np.testing.assert_allclose(axes[0, 0].images[0].get_array(), r.clean[0].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(axes[0, 3].images[0].get_array(), r.images[1].permute(1, 2, 0).numpy())
    assert axes[0, 0].get_title() == "zero"
    l2 = float((r.images[1] - r.clean[1]).norm())
    assert axes[0, 3].get_title() == f"→ two\nL2 {l2:.2f}"
    assert axes[1, 0].get_ylabel() == "pgd" and fig._suptitle.get_text() == "Fig. 6(a) (paper): x"


def test_rows_with_fewer_examples_leave_blanks_and_say_when_empty():
    fig = example_grid({"fgsm": result(1), "jsma": result(0, "jsma")}, CLASSES, per_attack=2, title="t")
    axes = np.array(fig.axes).reshape(2, 4)
    assert len(axes[0, 1].images) == 1 and not axes[0, 2].axison and not axes[0, 2].images
    assert axes[1, 0].texts[0].get_text() == "no adversarial example found"


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="at least one attack"):
        example_grid({}, CLASSES, title="t")
    with pytest.raises(ValueError, match="per_attack must be an int >= 1"):
        example_grid({"fgsm": result(2)}, CLASSES, per_attack=0, title="t")
    with pytest.raises(ValueError, match="must index the 2 classes"):
        example_grid({"fgsm": result(3)}, CLASSES[:2], title="t")
