"""Shared settings checks: the value back normalised, or an error naming the argument."""

import numpy as np
import pytest

from modgraph.checks import finite_number, int_at_least, positive_number


def test_int_at_least_normalises_and_names_the_argument():
    assert int_at_least(np.int64(3), "pool") == 3 and type(int_at_least(np.int64(3), "pool")) is int
    assert int_at_least(0, "seed", 0) == 0
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match=r"pool must be an int >= 1, got"):
            int_at_least(bad, "pool")


def test_numbers_are_floats_and_bad_ones_are_named():
    assert finite_number(np.float32(-0.5), "threshold") == -0.5 and type(finite_number(2, "threshold")) is float
    assert positive_number(np.int64(2), "width") == 2.0 and type(positive_number(0.25, "width")) is float
    for bad in (float("nan"), float("inf"), True, "0.1", None):
        with pytest.raises(ValueError, match=r"threshold must be a finite number, got"):
            finite_number(bad, "threshold")
    for bad in (0, -1.0, float("nan"), False, "1"):
        with pytest.raises(ValueError, match=r"width must be a number > 0, got"):
            positive_number(bad, "width")
