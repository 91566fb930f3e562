import importlib

import torch

from modgraph.compat import advertorch_attacks, patch_advertorch, zero_gradients


def test_patch_makes_advertorch_importable_and_is_idempotent():
    patch_advertorch()
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    shim = gradcheck.zero_gradients
    patch_advertorch()
    assert gradcheck.zero_gradients is shim
    attacks = advertorch_attacks()
    assert hasattr(attacks, "GradientSignAttack") and hasattr(attacks, "FABAttack")


def test_zero_gradients_tensor_and_nested_iterable():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(2, 2, requires_grad=True)
    c = torch.ones(1, requires_grad=True)
    (a.sum() * 2 + (b * 3).sum() + c.sum()).backward()
    assert a.grad.abs().sum() > 0
    zero_gradients(a)
    assert torch.equal(a.grad, torch.zeros(3))
    zero_gradients([b, (c, torch.zeros(1))])
    assert torch.equal(b.grad, torch.zeros(2, 2)) and torch.equal(c.grad, torch.zeros(1))


def test_zero_gradients_detaches_graph_gradient():
    x = torch.ones(2, requires_grad=True)
    x.grad = torch.ones(2) * torch.ones(2, requires_grad=True)
    assert x.grad.requires_grad
    zero_gradients(x)
    assert not x.grad.requires_grad and torch.equal(x.grad, torch.zeros(2))
