"""Architectures: registry, configuration, layer definitions and what the taps capture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MODELS,
    VGG_STAGES,
    Normalize,
    create_model,
    list_models,
    model_config,
    vgg_remove_last_units,
)
from modgraph.models.resnet_cifar import PadShortcut

TINY = 1 / 16


pytestmark = pytest.mark.usefixtures("small_model_kernels")

LAYER_COUNTS = {
    "vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16,
    "resnet18": 9, "resnet34": 17, "resnet50": 17, "resnet101": 34, "resnet152": 51,
    "resnet20": 10, "resnet32": 16, "resnet44": 22, "resnet56": 28, "resnet110": 55,
    **{f"vgg19_{n}": 16 - n for n in range(1, 7)},
    **{f"vgg11_{n}": 8 - n for n in range(1, 4)},
    **{f"resnet152_{n}": 51 - n for n in (5, 11, 16, 21, 26, 30)},
    "resnet56_authors_cifar10": 12, "resnet56_authors_cifar100": 17,
    **{f"tv_resnet{d}": c for d, c in ((18, 9), (34, 17), (50, 17), (101, 34), (152, 51))},
    **{f"tv_vgg{d}_bn": c for d, c in ((11, 8), (13, 10), (16, 13), (19, 16))},
    "vit_cifar": 7, "vit_cifar_deep": 13, "tv_vit_b_16": 13, "tv_vit_b_32": 13,
}


def _build(name: str, **kwargs) -> nn.Module:
    width = 1.0 if name.startswith("tv_") else TINY
    return create_model(name, width=width, seed=0, **kwargs)


def _capture(model: nn.Module, x: torch.Tensor, tap: str) -> dict[str, torch.Tensor]:
    """Forward ``x`` and return each declared layer's output as the hook saw it."""
    seen: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
               for name, module in model.feature_layers(tap)]
    try:
        with torch.no_grad():
            seen["logits"] = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters; eval mode."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_registry_holds_every_required_model():
    assert set(list_models()) == set(LAYER_COUNTS)
    assert list_models() == sorted(list_models())
    assert len(MODELS) == len(LAYER_COUNTS)


@pytest.mark.parametrize("name", sorted(LAYER_COUNTS))
def test_every_model_runs_and_declares_its_layers(name):
    model = _build(name).eval()
    first_name, first = next(iter(model.named_children()))
    assert (first_name, type(first)) == ("normalize", Normalize)
    modules = dict(model.named_modules())
    for tap in ("block", "conv"):
        layers = model.feature_layers(tap)
        assert len(layers) == LAYER_COUNTS[name]
        assert all(modules[layer] is module for layer, module in layers)

    # every hooked output is still what the hook saw once the forward pass is over (no in-place edits)
    saved = []
    hook = lambda m, i, o: saved.append((o, o.clone()))  # noqa: E731
    handles = [m.register_forward_hook(hook) for tap in ("block", "conv") for _, m in model.feature_layers(tap)]
    with torch.no_grad():
        logits = model(_images(size=224 if name.startswith("tv_vit") else 32))
    for handle in handles:
        handle.remove()
    num_classes = 1000 if name.startswith("tv_") else 10
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
    assert len(saved) == 2 * LAYER_COUNTS[name]
    assert all(torch.equal(kept, copy) for kept, copy in saved)


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_vgg_taps_capture_conv_and_unit_outputs(name):
    model = _randomise_bn(create_model(name, width=1 / 8, seed=0))
    x = _images()
    block, conv = _capture(model, x, "block"), _capture(model, x, "conv")
    h = model.normalize(x)
    with torch.no_grad():
        for s, stage in enumerate(model.config.stages, 1):
            for u in range(len(stage)):
                unit = getattr(model, f"stage{s}")[u]
                pre = F.conv2d(h, unit.conv.weight, padding=1)
                torch.testing.assert_close(conv[f"stage{s}.{u}.conv"], pre)
                h = F.relu(F.batch_norm(pre, unit.bn.running_mean, unit.bn.running_var,
                                        unit.bn.weight, unit.bn.bias, eps=unit.bn.eps))
                assert (block[f"stage{s}.{u}"] >= 0).all()
                torch.testing.assert_close(block[f"stage{s}.{u}"], h)
            h = F.max_pool2d(h, 2)
        torch.testing.assert_close(block["logits"], model.classifier(h))
    assert (conv["stage1.0.conv"] < 0).any()


@pytest.mark.parametrize("name,overrides", [
    ("resnet18", {}),
    ("resnet20", {}),
    ("resnet50", {"depths": (1, 2, 1, 1)}),
])
def test_resnet_taps_capture_stem_and_chain_of_blocks(name, overrides):
    model = _randomise_bn(create_model(name, width=1 / 8, seed=0, **overrides))
    x = _images()
    block, conv = _capture(model, x, "block"), _capture(model, x, "conv")
    with torch.no_grad():
        h = model.normalize(x)
        torch.testing.assert_close(conv["stem.conv"], model.stem.conv(h))
        torch.testing.assert_close(block["stem"], F.relu(model.stem.bn(model.stem.conv(h))))
        names = [n for n, _ in model.feature_layers("block")]
        modules = dict(model.named_modules())
        for prev, nxt in zip(names, names[1:]):
            torch.testing.assert_close(block[nxt], modules[nxt](block[prev]))
            assert (block[nxt] >= 0).all()
        assert [n for n, _ in model.feature_layers("conv")][1:] == names[1:]
        torch.testing.assert_close(block["logits"], model.fc(block[names[-1]].mean(dim=(2, 3))))


def test_torchvision_resnet_stem_and_blocks():
    model = _randomise_bn(create_model("tv_resnet18", seed=0))
    net, x = model.net, _images()
    block, conv = _capture(model, x, "block"), _capture(model, x, "conv")
    with torch.no_grad():
        h = model.normalize(x)
        torch.testing.assert_close(conv["net.conv1"], net.conv1(h))
        torch.testing.assert_close(block["net.maxpool"], net.maxpool(F.relu(net.bn1(net.conv1(h)))))
        names = [n for n, _ in model.feature_layers("block")]
        modules = dict(model.named_modules())
        for prev, nxt in zip(names, names[1:]):
            torch.testing.assert_close(block[nxt], modules[nxt](block[prev]))
        torch.testing.assert_close(block["logits"], net.fc(block[names[-1]].mean(dim=(2, 3))))


def test_torchvision_vgg_units():
    model = _randomise_bn(create_model("tv_vgg11_bn", seed=0))
    x = _images()
    block, conv = _capture(model, x, "block"), _capture(model, x, "conv")
    features = model.net.features
    for (b, _), (c, _) in zip(model.feature_layers("block"), model.feature_layers("conv")):
        i, j = int(b.rsplit(".", 1)[1]), int(c.rsplit(".", 1)[1])
        assert i == j + 2 and isinstance(features[j], nn.Conv2d) and isinstance(features[j + 1], nn.BatchNorm2d)
        with torch.no_grad():
            torch.testing.assert_close(block[b], F.relu(features[j + 1](conv[c])))
    with torch.no_grad():
        torch.testing.assert_close(conv["net.features.0"], features[0](model.normalize(x)))


def test_resnet56_parameter_count():
    params = sum(p.numel() for p in create_model("resnet56").parameters())
    assert 0.84e6 <= params <= 0.87e6


def test_pad_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()
    assert not list(PadShortcut(16, 32, 2).parameters())
    with pytest.raises(ValueError, match="cannot reduce channels"):
        PadShortcut(32, 16, 2)
    option_a = create_model("resnet20")
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in option_a.modules())


@pytest.mark.parametrize("base,n,expected", [
    ("vgg19", 3, ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,))),
    ("vgg19", 6, ((64, 64), (128, 128), (256,) * 4, (512,), (512,))),
    ("vgg11", 1, ((64,), (128,), (256, 256), (512, 512), (512,))),
    ("vgg11", 2, ((64,), (128,), (256, 256), (512,), (512,))),
    ("vgg11", 3, ((64,), (128,), (256,), (512,), (512,))),
    ("vgg16", 0, VGG_STAGES["vgg16"]),
])
def test_vgg_remove_last_units(base, n, expected):
    assert vgg_remove_last_units(VGG_STAGES[base], n) == expected


def test_vgg_remove_last_units_is_repeated_single_removal_and_refuses_to_empty_a_stage():
    stages = VGG_STAGES["vgg19"]
    for n in range(1, 12):
        assert vgg_remove_last_units(stages, n) == vgg_remove_last_units(vgg_remove_last_units(stages, n - 1), 1)
    with pytest.raises(ValueError, match="0..11"):
        vgg_remove_last_units(stages, 12)
    with pytest.raises(ValueError):
        vgg_remove_last_units(stages, -1)


@pytest.mark.parametrize("child,parent,config", [
    ("vgg19_4", "vgg19", {"stages": vgg_remove_last_units(VGG_STAGES["vgg19"], 4)}),
    ("vgg11_3", "vgg11", {"stages": vgg_remove_last_units(VGG_STAGES["vgg11"], 3)}),
    ("resnet152_16", "resnet152", {"depths": (3, 8, 20, 3)}),
])
def test_depth_variants_are_configurations_sharing_layer_names(child, parent, config):
    assert model_config(child) == model_config(parent, **config)
    assert type(create_model(child, width=TINY)) is type(create_model(parent, width=TINY))
    for tap in ("block", "conv"):
        kept = [n for n, _ in create_model(child, width=TINY).feature_layers(tap)]
        full = [n for n, _ in create_model(parent, width=TINY).feature_layers(tap)]
        assert set(kept) < set(full)
        assert [n for n in full if n in kept] == kept


def test_width_scales_channels_with_a_floor_of_one():
    assert create_model("vgg16", width=0.5).stage1[0].conv.out_channels == 32
    assert create_model("vgg16", width=1e-3).stage1[0].conv.out_channels == 1
    wide = create_model("resnet18", width=2.0)
    assert wide.stem.conv.out_channels == 128 and wide.fc.in_features == 1024
    assert create_model("resnet50", width=0.25).fc.in_features == 512


def test_overrides_replace_configuration_fields():
    model = create_model("resnet18", width=TINY, depths=[1, 1, 1, 1])
    assert model.config.depths == (1, 1, 1, 1)
    assert len(model.feature_layers()) == 5
    assert len(create_model("vgg11", width=TINY, stages=[[8], [8, 8]]).feature_layers("conv")) == 3


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "vgg17"}, "unknown model 'vgg17'; valid choices: .*vgg16"),
    ({"name": "vgg16", "depths": (1,)}, "unknown option.*depths.*valid options: stages, hidden, dropout"),
    ({"name": "vgg16", "num_classes": 1}, "num_classes"),
    ({"name": "vgg16", "num_classes": 2.5}, "num_classes"),
    ({"name": "vgg16", "width": 0}, "width"),
    ({"name": "vgg16", "width": -1.0}, "width"),
    ({"name": "vgg16", "width": float("nan")}, "width"),
    ({"name": "vgg16", "stages": ((64,), ())}, "stages"),
    ({"name": "vgg16", "stages": ((64.5,),)}, "stages"),
    ({"name": "resnet18", "depths": (2, 2, 2)}, "equally long"),
    ({"name": "resnet18", "depths": (2, 0, 2, 2)}, "positive"),
    ({"name": "resnet18", "block": "wide"}, "unknown residual block 'wide'; valid choices: basic, bottleneck"),
    ({"name": "resnet18", "shortcut": "none"}, "unknown shortcut 'none'; valid choices: pad, projection"),
    ({"name": "resnet20", "widths": (64, 32, 16)}, "cannot reduce channels"),
    ({"name": "tv_resnet18", "width": 0.5}, "fixed width"),
    ({"name": "vgg16", "mean": (0.5, 0.5), "std": (0.2, 0.2, 0.2)}, "equally long"),
    ({"name": "vgg16", "std": (0.2, 0.0, 0.2)}, "std must be positive"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(**kwargs)


def test_unknown_tap_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown tap 'relu'; valid choices: block, conv"):
        create_model("resnet20", width=TINY).feature_layers("relu")


def test_models_normalise_their_own_pixel_space_input():
    model = create_model("vgg11", width=TINY, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    x = _images()
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), expected)
    default = create_model("vgg11", width=TINY).normalize
    torch.testing.assert_close(default.mean.flatten(), torch.tensor(CIFAR10_MEAN))
    torch.testing.assert_close(default.std.flatten(), torch.tensor(CIFAR10_STD))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.rand(2, 3, 16, 16))


def test_same_seed_same_weights_without_touching_global_state():
    state = torch.get_rng_state()
    a = create_model("resnet20", width=0.5, seed=3).state_dict()
    b = create_model("resnet20", width=0.5, seed=3).state_dict()
    c = create_model("resnet20", width=0.5, seed=4).state_dict()
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.conv.weight"], c["stem.conv.weight"])


def test_torchvision_weights_load_from_a_local_file(tmp_path):
    source = create_model("tv_resnet18", num_classes=10, seed=0)
    path = tmp_path / "r18.pt"
    torch.save(source.net.state_dict(), path)
    loaded = create_model("tv_resnet18", num_classes=10, weights=path, seed=1)
    assert all(torch.equal(v, loaded.net.state_dict()[k]) for k, v in source.net.state_dict().items())
    torch.testing.assert_close(loaded.normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert model_config("tv_resnet18", weights=path).weights == str(path)

    with pytest.raises(ValueError, match="does not exist"):
        create_model("tv_resnet18", weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="does not fit torchvision resnet18 with 1000 classes"):
        create_model("tv_resnet18", weights=path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a state dict")
    with pytest.raises(ValueError, match="cannot read weights file"):
        create_model("tv_resnet18", weights=garbage)


def test_the_papers_resnet152_variant_names():
    variants = sorted((n for n in list_models() if n.startswith("resnet152_")), key=lambda n: int(n.split("_")[1]))
    assert variants == [f"resnet152_{n}" for n in (5, 11, 16, 21, 26, 30)]
    assert [model_config(v).depths[2] for v in variants] == [31, 25, 20, 15, 10, 6]  # Table B3's blocks kept


@pytest.mark.parametrize("name,num_classes,params", [
    ("resnet56", 10, 853_018),  # He et al.'s 0.85M
    ("resnet56_authors_cifar10", 10, 487_002),  # keeps (2, 3, 6) blocks: 42.9 % fewer (the paper: 43.00 %)
    ("resnet56_authors_cifar100", 100, 765_812),  # keeps (1, 6, 9)
])
def test_authors_pruned_resnet56_parameter_counts(name, num_classes, params):
    model = create_model(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == params


def test_vit_tokens_layers_and_size():
    model = create_model("vit_cifar", seed=0).eval()
    assert sum(p.numel() for p in model.parameters()) == 811_146  # dim 128, 6 blocks, MLP 256, 65 tokens
    seen = _capture(model, _images(3), "block")
    assert [name for name, _ in model.feature_layers("block")] == ["embed"] + [f"blocks.{i}" for i in range(6)]
    assert all(seen[f"blocks.{i}"].shape == (3, 65, 128) for i in range(6)) and seen["embed"].shape == (3, 65, 128)
    # the head reads the class token (token 0) of the last block only
    with torch.no_grad():
        expected = model.head(model.norm(seen["blocks.5"][:, 0]))
    assert torch.allclose(seen["logits"], expected, atol=1e-6)


@pytest.mark.parametrize("train", [False, True])
def test_vit_attention_equals_multihead_attention_in_value_and_gradient(train):
    block = create_model("vit_cifar", width=0.5, seed=0).blocks[0].train(train)
    y = torch.randn(4, 65, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ours = block.attend(y)
    ours.square().sum().backward()
    grads = [y.grad.clone()] + [p.grad.clone() for p in block.attn.parameters()]
    y.grad = None
    block.zero_grad()
    theirs = block.attn(y, y, y, need_weights=False)[0]
    theirs.square().sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-6)
    for mine, reference in zip(grads, [y.grad] + [p.grad for p in block.attn.parameters()]):
        assert torch.allclose(mine, reference, atol=1e-5)


def test_vit_width_keeps_dim_a_multiple_of_heads_and_refuses_bad_sizes():
    assert create_model("vit_cifar", width=0.5).embed.proj.out_channels == 64
    assert create_model("vit_cifar", width=0.3).embed.proj.out_channels == 40
    assert create_model("vit_cifar", width=0.001).embed.proj.out_channels == 4
    with pytest.raises(ValueError, match="image_size 32 is not a multiple of patch 5"):
        create_model("vit_cifar", patch=5)
    with pytest.raises(ValueError, match="this ViT takes 32x32 images"):
        create_model("vit_cifar", width=TINY)(_images(1, size=64))
