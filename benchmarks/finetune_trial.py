"""Fine-tuning trial: a depth variant fine-tuned from its stored parent under variants of a recipe.

    python benchmarks/finetune_trial.py --parent vgg11 --variant vgg11_3 --epochs 4 --lr 0.2 0.05 0.02

The parent is the model store's (trained on first use, like the book's
chapter 06 parents: recipe, width, epochs and seed as given). Each peak learning rate
in ``--lr`` fine-tunes a fresh copy of the variant initialised from the
parent's weights (:func:`modgraph.prune.transfer_weights`); nothing is stored.
One JSON line per run: accuracy after each epoch, the parent's accuracy,
minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from modgraph.data import load_dataset
from modgraph.models import create_model
from modgraph.prune import transfer_weights
from modgraph.store import ModelSpec, accuracy_percent, get_model
from modgraph.train import get_recipe, train_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--parent", default="vgg11")
    parser.add_argument("--variant", default="vgg11_3")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--recipe", default="quick", help="registered recipe of the parent and the fine-tuning")
    parser.add_argument("--parent-epochs", type=int, help="the parent's training epochs; default: the recipe's")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    parser.add_argument("--lr", type=float, nargs="+", default=[0.2], help="peak learning rates to try")
    parser.add_argument("--warmup-epochs", type=float, help="default: the recipe's, stretched to --epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        base = get_recipe(args.recipe)
        spec = ModelSpec(args.parent, args.dataset, recipe=base.name, epochs=args.parent_epochs, width=args.width,
                         seed=args.seed)
        tuned = base.for_arch(args.variant, args.epochs)
        recipes = [replace(tuned, name="trial", lr=lr,
                           **({} if args.warmup_epochs is None else {"warmup_epochs": args.warmup_epochs}))
                   for lr in args.lr]
    except ValueError as err:
        parser.error(str(err))
    parent = get_model(spec)
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    for recipe in recipes:
        child = create_model(args.variant, num_classes=train.num_classes, width=args.width, mean=train.mean,
                             std=train.std, seed=args.seed)
        transfer_weights(parent.model, child)
        start = time.perf_counter()
        metrics = train_model(child, train, test, recipe, seed=args.seed, initialise=False)
        print(json.dumps({
            "parent": args.parent, "parent_acc": accuracy_percent(parent.metrics), "variant": args.variant,
            "recipe": recipe.to_dict(), "test_acc": [round(h["test_acc"], 4) for h in metrics["history"]],
            "final_test_acc_fp32": round(metrics["final_test_acc"], 4),
            "minutes": round((time.perf_counter() - start) / 60, 2),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
