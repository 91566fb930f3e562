"""A CIFAR-sized Vision Transformer (Dosovitskiy et al. 2021) for 32x32 images.

Patch embedding (a ``patch`` x ``patch`` convolution of stride ``patch``), a
learned class token and position embedding, ``depth`` pre-norm encoder blocks
(multi-head self-attention, then a GELU MLP of ``mlp_ratio * dim`` hidden units,
each inside a residual connection), a final layer norm and a linear head on the
class token. ``width`` scales ``dim`` (rounded to a multiple of ``heads``).

Layer names: ``"embed"`` (the tokens entering the first block: patches plus
position embedding, with the class token first) and ``"blocks.{i}"`` (the
output of encoder block ``i``). Every layer outputs a token sequence
``(N, 1 + P, dim)``, token 0 being the class token. Both taps read the same
modules: a transformer has no Conv-BN-ReLU unit to read inside.

Registered as ``vit_cifar`` (dim 128, 6 blocks of 4 heads, MLP ratio 2,
about 0.8 M parameters at width 1) and ``vit_cifar_deep`` (12 blocks).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.models.layers import CifarDefaults, Normalize
from modgraph.models.taps import LayerSpec, tap_layers

__all__ = ["ViTConfig", "VisionTransformer", "EncoderBlock", "CONFIGS"]


@dataclass(frozen=True)
class ViTConfig(CifarDefaults):
    """ViT architecture: token width ``dim`` (before width scaling), ``depth`` blocks, ``heads`` heads."""

    dim: int = 128
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 2.0
    patch: int = 4
    image_size: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        ints = {"dim": self.dim, "depth": self.depth, "heads": self.heads, "patch": self.patch,
                "image_size": self.image_size}
        bad = [f"{key}={value!r}" for key, value in ints.items()
               if isinstance(value, bool) or not isinstance(value, Integral) or value < 1]
        if bad:
            raise ValueError(f"ViT sizes must be positive integers; got {', '.join(bad)}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")
        if not isinstance(self.mlp_ratio, Real) or not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0; got {self.mlp_ratio!r}")
        if not isinstance(self.dropout, Real) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        for key in ints:
            object.__setattr__(self, key, operator.index(getattr(self, key)))

    def scaled_dim(self, width: float) -> int:
        """``dim * width`` rounded to a multiple of ``heads`` (at least ``heads``)."""
        return self.heads * max(1, round(self.dim * width / self.heads))

    def build(self, num_classes: int, width: float, mean: Sequence[float], std: Sequence[float]) -> VisionTransformer:
        """The ViT this configuration describes."""
        return VisionTransformer(self, num_classes, width, mean, std)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``; ``(N, T, D) -> (N, T, D)``."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """``self.attn(y, y, y)`` (its weights, its dropout on the attention weights) through
        ``scaled_dot_product_attention``: the same output, faster to train on CPU; ``(N, T, D) -> (N, T, D)``."""
        n, t, d = y.shape
        heads = self.attn.num_heads
        qkv = F.linear(y, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn.dropout if self.training else 0.0)
        return self.attn.out_proj(out.transpose(1, 2).reshape(n, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Embedding(nn.Module):
    """Patches to tokens: ``(N, 3, H, W) -> (N, 1 + (H/p)(W/p), D)``, class token first, position added."""

    def __init__(self, dim: int, patch: int, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + (image_size // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"this ViT takes {self.image_size}x{self.image_size} images; got {tuple(x.shape)}")
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos


class VisionTransformer(nn.Module):
    """ViT on pixel-space input ``(N, 3, S, S)`` -> logits ``(N, C)``.

    Submodules: ``normalize``, ``embed``, ``blocks`` (``blocks.0`` ..), ``norm``, ``head``.
    """

    def __init__(self, config: ViTConfig, num_classes: int, width: float,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.config = config
        dim = config.scaled_dim(width)
        self.normalize = Normalize(mean, std)
        self.embed = Embedding(dim, config.patch, config.image_size)
        hidden = max(1, round(dim * config.mlp_ratio))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, config.heads, hidden, config.dropout)
                                      for _ in range(config.depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.embed(self.normalize(x)))
        return self.head(self.norm(tokens[:, 0]))

    def feature_layers(self, tap: str = "block") -> list[tuple[str, nn.Module]]:
        """``"embed"``, then every encoder block ``"blocks.{i}"`` (the same modules under both taps)."""
        specs = [LayerSpec("embed")] + [LayerSpec(f"blocks.{i}") for i in range(self.config.depth)]
        return tap_layers(self, specs, tap)


CONFIGS: dict[str, ViTConfig] = {
    "vit_cifar": ViTConfig(),
    "vit_cifar_deep": ViTConfig(depth=12),
}
