"""t-SNE of layer features: seeded, checked, one embedding per layer."""

import numpy as np
import pytest
import torch

from modgraph import embeddings


def test_tsne_embed_is_seeded_and_checks_shapes():
    X = np.random.default_rng(0).normal(size=(40, 6))
    a = embeddings.tsne_embed(X, seed=1, perplexity=5)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, embeddings.tsne_embed(X, seed=1, perplexity=5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        embeddings.tsne_embed(X[0])
    with pytest.raises(ValueError, match="perplexity"):
        embeddings.tsne_embed(X, perplexity=40)


class TwoLayers(torch.nn.Module):
    """The smallest model that declares feature layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
        self.head(self.conv(torch.zeros(1, 3, 8, 8)))

    def forward(self, x):
        return self.head(self.conv(x))

    def feature_layers(self, tap="block"):
        return [("conv", self.conv), ("head", self.head)]


def test_layer_embeddings_embed_every_layer_like_tsne_of_its_features():
    from modgraph.features import iter_layer_features

    model = TwoLayers().eval()
    images = torch.rand(30, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = embeddings.layer_embeddings(model, images, perplexity=5, seed=3, progress=False)
    assert list(emb) == ["conv", "head"]
    conv = dict(iter_layer_features(model, images, tap="block", progress=False))["conv"]
    np.testing.assert_allclose(emb["conv"], embeddings.tsne_embed(conv.numpy(), seed=3, perplexity=5))
