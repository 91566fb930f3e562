"""Layer features: equivalence with direct hooks, grouping, state restoration, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modgraph.features import iter_layer_features, layer_modules, layer_names, plan_groups
from modgraph.models import create_model

N = 10


pytestmark = pytest.mark.usefixtures("small_model_kernels")


def _images(n: int = N) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _model(name: str = "vgg11") -> nn.Module:
    model = create_model(name, width=1 / 8, seed=0)
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return model


def _reference(model: nn.Module, images: torch.Tensor, tap: str) -> dict[str, torch.Tensor]:
    """Features from one plain forward pass with hooks, independent of the code under test."""
    seen = {}
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, o.flatten(1).clone()))
               for name, m in model.feature_layers(tap)]
    model.eval()
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return seen


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class _Counter:
    """Counts forward calls of one module through a pre-hook (``handle`` removes it)."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, inputs: object) -> None:
        self.calls += 1


def test_layer_names_follow_the_model_declaration():
    model = _model("resnet20")
    assert layer_names(model) == [n for n, _ in model.feature_layers("block")]
    assert layer_names(model, "conv")[0] == "stem.conv" and layer_names(model, "conv")[1:] == layer_names(model)[1:]
    assert [m for _, m in layer_modules(model)] == [m for _, m in model.feature_layers()]
    with pytest.raises(ValueError, match="Sequential does not declare feature layers"):
        layer_names(nn.Sequential(nn.Conv2d(3, 3, 3)))
    with pytest.raises(ValueError, match="valid choices: block, conv"):
        layer_names(model, "relu")


@pytest.mark.parametrize("name,tap", [("vgg11", "block"), ("vgg11", "conv"), ("resnet20", "block"), ("resnet20", "conv")])
def test_features_equal_a_plain_hooked_forward(name, tap):
    model, images = _model(name), _images()
    expected = _reference(model, images, tap)
    got = list(iter_layer_features(model, images, tap=tap, batch_size=4, device="cpu"))
    assert [n for n, _ in got] == layer_names(model, tap)
    for layer, features in got:
        assert features.dtype == torch.float32 and features.device.type == "cpu"
        assert features.shape == expected[layer].shape and features.shape[0] == N
        torch.testing.assert_close(features, expected[layer], rtol=1e-5, atol=1e-5)


def test_block_tap_is_rectified_and_conv_tap_is_not():
    model, images = _model("vgg11"), _images()
    assert all((f >= 0).all() for _, f in iter_layer_features(model, images, tap="block"))
    assert all((f < 0).any() for _, f in iter_layer_features(model, images, tap="conv"))


def test_grouping_and_batching_change_nothing():
    model, images = _model("vgg11"), _images()
    single = dict(iter_layer_features(model, images, batch_size=N))
    one_per_layer = dict(iter_layer_features(model, images, batch_size=3, max_bytes=1))
    assert list(single) == list(one_per_layer) == layer_names(model)
    for layer in single:
        torch.testing.assert_close(one_per_layer[layer], single[layer], rtol=1e-5, atol=1e-5)
    again = dict(iter_layer_features(model, images, batch_size=N))
    assert all(torch.equal(again[layer], single[layer]) for layer in single)


def test_forward_passes_per_group_stop_at_the_deepest_layer():
    model, images = _model("vgg11"), _images()
    names = layer_names(model)
    head, normalize = _Counter(model.classifier), _Counter(model.normalize)
    sizes = {n: f.numel() * 4 for n, f in iter_layer_features(model, images, batch_size=4)}
    assert head.calls == 0
    assert normalize.calls == 1 + 3  # probe + ceil(10 / 4) batches, one group
    budget = sizes[names[0]] + sizes[names[1]]
    groups = plan_groups([sizes[n] for n in names], budget)
    assert groups[0] == [0, 1] and len(groups) >= 2
    normalize.calls = 0
    assert [n for n, _ in iter_layer_features(model, images, batch_size=4, max_bytes=budget)] == names
    assert normalize.calls == 1 + 3 * len(groups)
    normalize.calls = 0
    list(iter_layer_features(model, images, batch_size=4, max_bytes=1))
    assert normalize.calls == 1 + 3 * len(names)
    head.handle.remove()
    normalize.handle.remove()


@pytest.mark.parametrize("nbytes,max_bytes,expected", [
    ([4, 4, 4], 8, [[0, 1], [2]]),
    ([4, 4, 4], 100, [[0, 1, 2]]),
    ([10, 1, 1], 5, [[0], [1, 2]]),
    ([1, 10, 1], 5, [[0], [1], [2]]),
    ([], 5, []),
])
def test_plan_groups(nbytes, max_bytes, expected):
    groups = plan_groups(nbytes, max_bytes)
    assert groups == expected
    assert [i for group in groups for i in group] == list(range(len(nbytes)))
    assert all(len(g) == 1 or sum(nbytes[i] for i in g) <= max_bytes for g in groups)


def test_plan_groups_rejects_a_non_positive_budget():
    with pytest.raises(ValueError, match="max_bytes"):
        plan_groups([1], 0)


def test_layer_subset_in_depth_order():
    model, images = _model("resnet20"), _images()
    names = layer_names(model)
    picked = [names[5], names[1]]
    got = dict(iter_layer_features(model, images, layers=picked))
    assert list(got) == [names[1], names[5]]
    full = dict(iter_layer_features(model, images))
    assert all(torch.equal(got[n], full[n]) for n in got)
    with pytest.raises(ValueError, match=r"layer 'layer9.0' matches no module of ResNet; close matches: layer3.0"):
        iter_layer_features(model, images, layers=["layer9.0"])
    with pytest.raises(ValueError, match="layers is empty"):
        iter_layer_features(model, images, layers=[])
    with pytest.raises(ValueError, match="not the string"):
        iter_layer_features(model, images, layers="stem")


@pytest.mark.parametrize("images,match", [
    (torch.rand(3, 32, 32), r"shape \(N, 3, H, W\)"),
    (torch.rand(0, 3, 32, 32), "empty"),
    ((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8), "floating point"),
    (torch.rand(2, 3, 32, 32) * 2 - 0.5, r"pixel space \[0, 1\]"),
    (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
    ([[0.5]], "torch.Tensor"),
])
def test_bad_images_are_rejected_before_any_work(images, match):
    with pytest.raises(ValueError, match=match):
        iter_layer_features(_model(), images)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 2.0}, {"max_bytes": 0}])
def test_bad_sizes_are_rejected(kwargs):
    with pytest.raises(ValueError):
        iter_layer_features(_model(), _images(), **kwargs)


def test_modes_grad_and_hooks_are_restored_between_and_after_yields():
    model, images = _model("vgg11"), _images()
    model.train()
    model.stage2.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    stats = model.stage1[0].bn.running_mean.clone()
    gen = iter_layer_features(model, images, max_bytes=1)
    next(gen)
    assert torch.is_grad_enabled()
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert _no_hooks(model)
    rest = list(gen)
    assert len(rest) == len(layer_names(model)) - 1
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(stats, model.stage1[0].bn.running_mean)  # batch norm ran in eval mode
    assert _no_hooks(model)


def test_closing_early_leaves_no_hooks():
    model = _model("vgg11")
    gen = iter_layer_features(model, _images())
    next(gen)
    gen.close()
    assert _no_hooks(model)


class _Toy(nn.Module):
    """Two layers; ``mode`` makes the forward misbehave in a chosen way."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.a = nn.Conv2d(3, 2, 3)
        self.b = nn.Conv2d(2, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "twice":
            x = self.a(x[:, :1].expand(-1, 3, -1, -1))
        if self.mode == "skip":
            return x
        return self.b(x)

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        if self.mode == "misnamed":
            return [("a", self.b), ("b", self.b)]
        return [("a", self.a), ("b", self.b)]


def test_an_exception_inside_the_forward_leaves_no_hooks_and_restores_modes():
    model = _Toy("raise").train()
    with pytest.raises(RuntimeError, match="boom"):
        list(iter_layer_features(model, _images()))
    assert _no_hooks(model) and model.training


@pytest.mark.parametrize("mode,match", [
    ("twice", "ran more than once"),
    ("skip", "did not run"),
    ("misnamed", "not the qualified name"),
])
def test_ill_declared_layers_are_reported(mode, match):
    model = _Toy(mode)
    with pytest.raises(ValueError, match=match):
        list(iter_layer_features(model, _images()))
    assert _no_hooks(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_features_on_cuda_match_cpu_and_model_stays_home():
    model, images = _model("resnet20"), _images()
    cpu = dict(iter_layer_features(model, images, device="cpu"))
    gpu = dict(iter_layer_features(model, images, device="cuda"))
    assert next(model.parameters()).device.type == "cpu"
    for layer in cpu:
        assert gpu[layer].device.type == "cuda"
        torch.testing.assert_close(gpu[layer].cpu(), cpu[layer], rtol=1e-3, atol=1e-3)
