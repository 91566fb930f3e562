"""Training speed: images/s of training steps in fp32 and bf16 + channels-last side by side, and (on a GPU) time to the paper's accuracy.

    python benchmarks/train_speed.py                         # default device, fast recipe's step
    python benchmarks/train_speed.py --device cpu --width 0.25 0.5 --batch-size 256 --steps 5
    python benchmarks/train_speed.py --device cuda           # adds: + torch.compile, and the fast recipe to 94.78 / 93.63 %

Throughput is measured on random uint8 CIFAR-sized images with the recipe's
complete step (augmentation, SGD update) after untimed warm-up steps, once in
float32, once in float32 with channels-last (what a CPU without native bf16
trains with) and once with bf16 autocast + channels-last (and on CUDA once more
with ``torch.compile``), whatever the recipe asks for. The last column says
what the recipe actually gets on this device (``modgraph.train.acceleration``):
on a CPU without native bf16 the bf16 column is emulated arithmetic and the
recipe trains in float32. On CUDA the script then trains each model with the
``fast`` recipe on CIFAR-10 (not through the store, so nothing is cached)
and reports the wall time until the test accuracy first reaches the accuracy
the paper reports for it.
"""

from __future__ import annotations

import argparse
import sys

import torch

from modgraph import provenance
from modgraph.data import load_dataset
from modgraph.models import create_model
from modgraph.train import Acceleration, acceleration, get_recipe, measure_throughput, resolve_device, train_model

PAPER_ACCURACY = {"resnet18": 0.9478, "vgg16": 0.9363}
"""CIFAR-10 test accuracies reported in the paper (Lu et al., ECCV 2022), not measured here."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["vgg16", "resnet18"], help="architectures")
    parser.add_argument("--width", type=float, nargs="+", default=[1.0], help="width multipliers")
    parser.add_argument("--recipe", default="fast", help="recipe whose step is timed")
    parser.add_argument("--batch-size", type=int, help="batch size; default: the recipe's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the time-to-accuracy runs on CUDA")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        recipe = get_recipe(args.recipe)
    except ValueError as err:
        parser.error(str(err))
    hw = provenance.hardware()
    granted = acceleration(recipe, device)
    print(f"device {device} ({hw.get('gpu', hw['cpu'])}, {hw['torch_threads']} torch threads), torch {hw['torch']}, "
          f"recipe {recipe.name}, {args.steps} timed steps after {args.warmup}")
    for note in granted.notes:
        print(f"note: {note}")
    modes = {"fp32": Acceleration(False, False, False), "fp32+CL": Acceleration(False, True, False),
             "bf16+CL": Acceleration(True, True, False)}
    if device.type == "cuda":
        modes["+compile"] = Acceleration(True, True, True)
    used = ("bf16" if granted.amp else "fp32") + ("+CL" if granted.channels_last else "")
    print(f"{'arch':<10} {'width':>6} {'batch':>6} " + " ".join(f"{m + ' img/s':>15}" for m in modes)
          + f" {'bf16 gain':>9} {'recipe uses':>11}")
    for arch in args.arch:
        for width in args.width:
            rates = {}
            for mode, accel in modes.items():
                model = create_model(arch, num_classes=10, width=width, seed=0)
                r = measure_throughput(model, recipe, batch_size=args.batch_size, steps=args.steps,
                                       warmup=args.warmup, device=device, accel=accel)
                rates[mode] = r["images_per_s"]
            print(f"{arch:<10} {width:>6g} {r['batch_size']:>6d} "
                  + " ".join(f"{rates[m]:>15.1f}" for m in modes)
                  + f" {rates['bf16+CL'] / rates['fp32']:>8.2f}x {used:>11}", flush=True)
    if device.type == "cuda" and not args.no_accuracy:
        time_to_accuracy(args.arch, device)
    return 0


def time_to_accuracy(archs: list[str], device: torch.device) -> None:
    """Train each arch with the ``fast`` recipe on CIFAR-10; print when it first reaches the paper's accuracy."""
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    recipe = get_recipe("fast")
    for arch in archs:
        target = PAPER_ACCURACY.get(arch)
        model = create_model(arch, num_classes=10, mean=train.mean, std=train.std, seed=0)
        metrics = train_model(model, train, test, recipe, seed=0, device=device)
        elapsed, reached = 0.0, None
        for h in metrics["history"]:
            elapsed += h["epoch_s"]
            if target is not None and reached is None and h["test_acc"] >= target:
                reached = (h["epoch"], elapsed)
        goal = f"paper {100 * target:.2f} %" if target is not None else "no paper accuracy"
        when = f"reached at epoch {reached[0]} after {reached[1]:.0f} s" if reached else "not reached"
        print(f"{arch}: fast recipe {metrics['epochs_completed']} epochs in {metrics['wall_time_s']:.0f} s, "
              f"final test accuracy {100 * metrics['final_test_acc']:.2f} % ({goal}: {when}), "
              f"{metrics['images_per_s']:.0f} images/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
