"""``python -m modgraph train``: train a model into the store (or find it there) and report its accuracy."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

DESCRIPTION = """\
Get the model described by the options from the model store, training it first
if it is not stored yet (an interrupted run resumes from its last epoch). Prints
the final test accuracy and the store folder; the same call again loads the
stored model in seconds.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "train", help="train a model into the model store", description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--arch", required=True, help="architecture name (modgraph.models.list_models())")
    parser.add_argument("--dataset", required=True, help="data set name (modgraph.data.DATASETS)")
    parser.add_argument("--recipe", default="fast", help="training recipe (modgraph.train.RECIPES)")
    parser.add_argument("--epochs", type=int, help="epochs; default: the recipe's (the schedule is stretched)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option (VALUE as JSON, else a string), e.g. depths=[1,1,1]; repeatable")
    parser.add_argument("--snapshot-epochs", type=int, nargs="*", default=[], metavar="E",
                        help="also keep the weights after these epochs (0 = initialisation)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Get (train or load) the stored model ``args`` describe and print its accuracy and folder."""
    from modgraph.store import ModelSpec, get_model

    spec = ModelSpec(arch=args.arch, dataset=args.dataset, recipe=args.recipe, epochs=args.epochs, seed=args.seed,
                     width=args.width, overrides=parse_overrides(args.override),
                     snapshot_epochs=tuple(args.snapshot_epochs))
    start = time.perf_counter()
    stored = get_model(spec, device=args.device, progress=not args.quiet)
    seconds = time.perf_counter() - start
    metrics = stored.metrics
    how = (f"trained in {seconds:.1f} s on {metrics['device']}" if stored.trained
           else f"loaded from the store in {seconds:.1f} s (trained in {metrics['wall_time_s']:.1f} s on "
                f"{metrics['device']})")
    print(f"{spec.arch} on {spec.dataset}, recipe {spec.recipe}, {metrics['epochs_completed']} epochs: {how}")
    print(f"final test accuracy: {100 * metrics['final_test_acc']:.2f} %")
    print(f"store folder: {stored.path}")
    return 0


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["depths=[1,1,1]", "block=basic"]`` -> ``{"depths": [1, 1, 1], "block": "basic"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override needs KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
