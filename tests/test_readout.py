"""Layer outputs of any shape -> (B, D) rows, on hand-made tensors."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from modgraph.readout import readout

X = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (B=2, T=3, D=4)


def test_token_reductions():
    assert torch.equal(readout(X, "l", "cls"), X[:, 0])
    assert torch.equal(readout(X, "l", "mean"), torch.tensor([[4.0, 5, 6, 7], [16, 17, 18, 19]]))
    assert torch.equal(readout(X, "l", "flatten"), X.reshape(2, 12))


def test_images_and_other_shapes_flatten_as_before():
    images = torch.rand(2, 3, 5, 5)
    for tokens in ("cls", "mean", "flatten"):
        assert torch.equal(readout(images, "l", tokens), images.reshape(2, -1))
    assert readout(torch.rand(2, 5, 5, 3, 2), "l").shape == (2, 150)


def test_containers_give_a_named_or_first_tensor():
    assert torch.equal(readout(("no", X, X + 1), "l", "cls"), X[:, 0])
    output = OrderedDict(attentions="none", last_hidden_state=X, pooled=X[:, 0] * 2)
    assert torch.equal(readout(output, "l", "mean"), X.mean(1))
    assert torch.equal(readout(output, "l", output_key="pooled"), X[:, 0] * 2)


@pytest.mark.parametrize("output,kwargs,match", [
    ("text", {}, "layer 'l' returned a str holding no tensor"),
    ((None, 3), {}, "returned a tuple holding no tensor"),
    ({"a": X}, {"output_key": "b"}, "without key 'b'; its keys: a"),
    (torch.tensor(1.0), {}, "scalar"),
    (X, {"tokens": "first"}, "valid choices: cls, flatten, mean"),
])
def test_bad_outputs_name_the_layer(output, kwargs, match):
    with pytest.raises(ValueError, match=match):
        readout(output, "l", **kwargs)
