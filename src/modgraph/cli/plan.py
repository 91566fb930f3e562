"""``python -m modgraph plan``: every model a book profile's notebooks will ask for, its cost, whether it is stored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modgraph import provenance

DESCRIPTION = """\
List every model the notebooks of --profile will ask the model store for
(derived from the same code the notebooks call, modgraph.plan), de-duplicated,
parents before the models fine-tuned from them, with the estimated training
cost (thop multiply-accumulates of one forward pass x training images x epochs)
and whether the store already holds it. `python -m modgraph models` trains the
missing ones. --estimate times one training step per recipe on this machine
and prints how long the missing models would take to train here.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``plan`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser("plan", help="the models a book profile needs, their cost, what is stored",
                                   description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", required=True, help="book profile (params/<profile>.yml)")
    parser.add_argument("--no-resolve", action="store_true",
                        help="do not measure a stored parent's curve to name the model pruned from it")
    parser.add_argument("--estimate", action="store_true",
                        help="time the missing models' training steps here and estimate their training time")
    parser.add_argument("--json", type=Path, help="also write the plan to this JSON file")
    parser.set_defaults(func=run_plan)
    return parser


def run_plan(args: argparse.Namespace) -> int:
    """Print the plan table and its summary line."""
    from modgraph.plan import estimate_training, format_duration, make_plan

    if args.json is not None:
        provenance.check_writable(args.json)
    plan = make_plan(args.profile, resolve=not args.no_resolve)
    table = plan.table()
    estimate = estimate_training(plan) if args.estimate and plan.missing() else None
    if estimate is not None:
        table["estimated time"] = [format_duration(estimate.seconds[k]) if k in estimate.seconds else ""
                                   for k in table["key"]]
    print(table.drop(columns=["level"]).to_string(index=False))
    print(plan.summary())
    if estimate is not None:
        print(estimate.summary())
    elif args.estimate:
        print("nothing to train: the store holds every model of the plan")
    if args.json is not None:
        provenance.atomic_write_json(args.json, {
            "profile": plan.profile, "total_macs": plan.total_macs,
            "estimated_training_s": None if estimate is None else round(estimate.total_s, 1),
            "models": json.loads(table.to_json(orient="records"))})
        print(f"wrote {args.json}")
    return 0
