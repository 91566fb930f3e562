"""``python -m modgraph <command>``: one module per subcommand in this package.

Each subcommand module defines ``add_parser(subparsers)`` which adds its parser
and sets ``func`` (``args -> int``). A ``ValueError`` raised by the library is
reported as a CLI error with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("curve", "train", "prune", "plan", "models")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="python -m modgraph",
        description="Modularity curves of deep networks (Lu et al., ECCV 2022).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"modgraph.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
