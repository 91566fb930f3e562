"""Layer selection of any module: family defaults, names and globs, errors, and parity with declared layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from modgraph.curve import modularity_curve
from modgraph.features import iter_layer_features, layer_names
from modgraph.models import create_model
from modgraph.models.external import PixelInput
from modgraph.selection import family_of, select_layers


pytestmark = pytest.mark.usefixtures("single_thread")


def _names(model: nn.Module, layers=None, tap: str = "block") -> list[str]:
    return [name for name, _ in select_layers(model, layers, tap)]


def test_parity_explicit_block_names_give_the_registry_curve_bit_for_bit():
    model = create_model("resnet18", width=0.25, seed=0)
    images = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) % 3
    names = layer_names(model)
    settings = dict(n=12, k=3, repeats=2, device="cpu", progress=False)
    registry = modularity_curve(model, images, labels, **settings)
    explicit = modularity_curve(model, images, labels, layers=list(reversed(names)), **settings)
    assert explicit.layers == registry.layers == tuple(names)
    np.testing.assert_array_equal(explicit.array, registry.array)
    assert explicit.meta["layer_selection"] == list(reversed(names))
    assert not {"layer_selection", "tokens", "output_key"} & set(registry.meta)  # defaults leave meta as before


def test_torchvision_family_defaults():
    resnet = torchvision.models.get_model("resnet50", weights=None)
    assert _names(resnet) == ["maxpool"] + [f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3))
                                            for b in range(n)]
    assert _names(resnet, tap="conv")[0] == "conv1" and len(_names(resnet)) == 17
    vit = torchvision.models.get_model("vit_b_16", weights=None)
    assert _names(vit) == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    convnext = torchvision.models.get_model("convnext_tiny", weights=None)
    blocks = [name for name, m in convnext.named_modules() if type(m).__name__ == "CNBlock"]
    assert _names(convnext) == blocks and len(blocks) == 18
    vgg = torchvision.models.get_model("vgg11_bn", weights=None)
    assert [type(m) for _, m in select_layers(vgg)] == [nn.ReLU] * 8
    assert [type(m) for _, m in select_layers(vgg, tap="conv")] == [nn.Conv2d] * 8
    assert family_of(PixelInput(vit)) == "vit" and _names(PixelInput(vit)) == _names(vit)


def test_vit_blocks_are_read_flattened_at_224_like_modgraphs_own_vit():
    vit = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=2,
                                               hidden_dim=8, mlp_dim=8)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    features = dict(iter_layer_features(PixelInput(vit, image_size=224), images, device="cpu"))
    assert list(features) == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    assert all(f.shape == (3, 197 * 8) for f in features.values())  # one rule: every token, as for vit_cifar
    cls = dict(iter_layer_features(PixelInput(vit, image_size=224), images, tokens="cls", device="cpu"))
    assert torch.equal(features["encoder.layers.encoder_layer_1"][:, :8], cls["encoder.layers.encoder_layer_1"])
    own = create_model("vit_cifar", width=0.25)
    dim = own.head.in_features
    assert all(f.shape[1] == 65 * dim for _, f in iter_layer_features(own, images, device="cpu"))


def test_globs_match_segment_by_segment():
    model = create_model("resnet18", width=0.25)
    assert _names(model, ["layer?.*"]) == layer_names(model)[1:]
    assert _names(model, ["layer1.*"]) == ["layer1.0", "layer1.1"]  # * does not cross a dot
    assert _names(model, ["layer1.0", "layer1.*", "stem"]) == ["stem", "layer1.0", "layer1.1"]


@pytest.mark.parametrize("layers,match", [
    (["layer9.0"], r"'layer9.0' matches no module of ResNet; close matches: .*layer1.0"),
    (["head.*"], "'head.\\*' matches no module"),
    ([], "layers is empty"),
    ("stem", "not the string"),
])
def test_bad_selections_name_the_problem(layers, match):
    with pytest.raises(ValueError, match=match):
        select_layers(create_model("resnet18", width=0.25), layers)


def test_unknown_family_needs_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"no known model family .*pass layers= \(CLI: --layers\).*: 0, 1"):
        select_layers(model)
    assert _names(model, ["1"]) == ["1"]


class _Odd(nn.Module):
    """A layer defined after the one it feeds, one that never runs, and one returning no tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(4, 4, 1)
        self.early = nn.Conv2d(3, 4, 3)
        self.unused = nn.Conv2d(4, 4, 1)
        self.info = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.late(self.early(x))
        self.info("not a tensor")
        return y


def test_layers_run_in_execution_order_and_misfits_are_errors():
    model, images = _Odd(), torch.rand(4, 3, 8, 8)
    assert list(dict(iter_layer_features(model, images, layers=["late", "early"], device="cpu"))) == ["early", "late"]
    with pytest.raises(ValueError, match="layer\\(s\\) unused did not run in the forward pass of _Odd"):
        list(iter_layer_features(model, images, layers=["early", "unused"], device="cpu"))
    with pytest.raises(ValueError, match="layer 'info' returned a str holding no tensor"):
        list(iter_layer_features(model, images, layers=["info"], device="cpu"))


def test_timm_defaults_use_its_feature_metadata():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2)
    assert _names(vit) == ["blocks.0", "blocks.1"]
    resnet = timm.create_model("resnet18", pretrained=False)
    assert _names(resnet) == [entry["module"] for entry in resnet.feature_info]
