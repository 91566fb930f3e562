"""Recipe trial: train one model on CIFAR-10 with a variant of a registered recipe, report accuracy per epoch.

    python benchmarks/recipe_trial.py --arch vgg16 --width 0.25 --epochs 10
    python benchmarks/recipe_trial.py --arch resnet20 --width 1 --epochs 10 --batch-size 128 --lr 0.1

Nothing is stored (the model store is not used): this is for choosing a
recipe, and prints one JSON line per run (accuracy after each epoch, images/s
per epoch, minutes, what the CPU or GPU granted: bf16 or float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from modgraph.data import load_dataset
from modgraph.models import create_model
from modgraph.train import get_recipe, train_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", default="vgg16")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--recipe", default="quick", help="registered recipe the variant starts from")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument("--pad", type=int, help="crop padding")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--warmup-epochs", type=float)
    parser.add_argument("--dropout", type=float, help="dropout rate of the model's Dropout layers while training")
    parser.add_argument("--whiten", action="store_true", help="patch-whitening initialisation of the first conv")
    parser.add_argument("--dirac", action="store_true", help="partial-identity initialisation of the later convs")
    parser.add_argument("--ema", type=float, help="decay per step of the weights' moving average (0: off)")
    parser.add_argument("--fp32", action="store_true", help="train in float32 (no bf16 autocast), channels-last kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    changes = {name: value for name, value in (("batch_size", args.batch_size), ("lr", args.lr),
                                               ("label_smoothing", args.label_smoothing), ("pad", args.pad),
                                               ("weight_decay", args.weight_decay),
                                               ("warmup_epochs", args.warmup_epochs), ("dropout", args.dropout),
                                               ("use_amp", False if args.fp32 else None),
                                               ("whiten", True if args.whiten else None),
                                               ("dirac", True if args.dirac else None), ("ema", args.ema))
               if value is not None}
    try:
        recipe = get_recipe(args.recipe)
        recipe = replace(recipe.with_epochs(args.epochs) if args.epochs else recipe, name="trial", **changes)
    except ValueError as err:
        parser.error(str(err))
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    model = create_model(args.arch, num_classes=10, width=args.width, mean=train.mean, std=train.std, seed=args.seed)
    start = time.perf_counter()
    metrics = train_model(model, train, test, recipe, seed=args.seed, device=args.device)
    print(json.dumps({
        "arch": args.arch, "width": args.width, "recipe": recipe.to_dict(),
        "acceleration": metrics["acceleration"],
        "test_acc": [round(h["test_acc"], 4) for h in metrics["history"]],
        "train_acc": [round(h["train_acc"], 4) for h in metrics["history"]],
        "final_test_acc_fp32": round(metrics["final_test_acc"], 4),
        "images_per_s": [round(h["images_per_s"]) for h in metrics["history"]],
        "minutes": round((time.perf_counter() - start) / 60, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
