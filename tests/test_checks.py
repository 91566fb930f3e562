"""Shared settings checks: the value back as an int, or an error naming the argument."""

import numpy as np
import pytest

from modgraph.checks import int_at_least


def test_int_at_least_normalises_and_names_the_argument():
    assert int_at_least(np.int64(3), "pool") == 3 and type(int_at_least(np.int64(3), "pool")) is int
    assert int_at_least(0, "seed", 0) == 0
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match=r"pool must be an int >= 1, got"):
            int_at_least(bad, "pool")
