"""Command-line options shared by the subcommands: the curve settings."""

from __future__ import annotations

import argparse

from modgraph.curve import CurveSettings
from modgraph.graph import SIMILARITIES

__all__ = ["add_curve_arguments", "curve_settings"]


def add_curve_arguments(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """Add the group ``title`` with the :class:`modgraph.curve.CurveSettings` options to ``parser``; returns it."""
    curve = parser.add_argument_group(title)
    curve.add_argument("-n", type=int, default=500, help="images per repeat")
    curve.add_argument("-k", type=int, default=3, help="neighbours per image in the k-NN graph")
    curve.add_argument("--repeats", type=int, default=5, help="disjoint random samples of n images")
    curve.add_argument("--sample-seed", type=int, default=0, help="seed drawing the samples")
    curve.add_argument("--similarity", default="cosine", choices=SIMILARITIES.names(),
                       help="similarity of feature vectors")
    curve.add_argument("--tap", default="block",
                       help="where a layer is read: block (the paper: unit / residual block output) or conv "
                            "(the authors' code: convolution output before batch norm)")
    return curve


def curve_settings(args: argparse.Namespace) -> CurveSettings:
    """The settings the options of :func:`add_curve_arguments` give."""
    return CurveSettings(n=args.n, k=args.k, repeats=args.repeats, seed=args.sample_seed, similarity=args.similarity,
                         tap=args.tap)
