"""Curve speed: seconds for one modularity curve per model (features and graph parts), random weights.

    python benchmarks/curve_speed.py                                   # vit_cifar, resnet18, vgg16, tv_vit_b_16
    python benchmarks/curve_speed.py --arch resnet18 vit_cifar -n 500 --repeats 5 --width 0.5

The time of a curve does not depend on the weights, so the models are
randomly initialised (nothing is trained or loaded) and the images are
uniform noise of each model's input size (32x32 for the CIFAR models, 224x224
for torchvision's). Each curve runs the model over ``n * repeats`` images and
builds ``repeats`` k-NN graphs per layer; the table splits the wall time into
the forward passes (features) and the graph + modularity part.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from modgraph import provenance
from modgraph.curve import modularity_curve
from modgraph.models import create_model, model_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["vit_cifar", "resnet18", "vgg16", "tv_vit_b_16"])
    parser.add_argument("--width", type=float, default=1.0, help="width of the CIFAR models (torchvision's: 1)")
    parser.add_argument("-n", type=int, default=500, help="images per repeat")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"device {args.device} ({provenance.hardware()['cpu']}, {torch.get_num_threads()} torch "
          f"threads), torch {torch.__version__}, n={args.n}, k={args.k}, repeats={args.repeats}")
    print(f"{'model':<14}{'width':>6}{'size':>6}{'layers':>8}{'params':>12}{'features s':>12}{'graph s':>9}"
          f"{'total s':>9}")
    for arch in args.arch:
        torchvision_model = arch.startswith("tv_")
        width = 1.0 if torchvision_model else args.width
        size = 224 if torchvision_model else getattr(model_config(arch), "image_size", 32)
        model = create_model(arch, num_classes=10, width=width, seed=0)
        generator = torch.Generator().manual_seed(0)
        total = args.n * args.repeats
        images = torch.rand(total, 3, size, size, generator=generator)
        labels = torch.arange(total) % 10
        t0 = time.perf_counter()
        curve = modularity_curve(model, images, labels, n=args.n, k=args.k, repeats=args.repeats, seed=0,
                                 batch_size=args.batch_size, device=args.device, progress=False)
        wall = time.perf_counter() - t0
        params = sum(p.numel() for p in model.parameters())
        print(f"{arch:<14}{width:>6g}{size:>6}{len(curve.layers):>8}{params:>12,}"
              f"{curve.meta['feature_time_s']:>12.1f}{curve.meta['graph_time_s']:>9.1f}{wall:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
