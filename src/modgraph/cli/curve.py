"""``python -m modgraph curve``: the modularity curve of one trained model, printed and saved as JSON."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modgraph import paths, provenance
from modgraph.graph import SIMILARITIES

DESCRIPTION = """\
Compute the modularity curve of a trained model: for `--repeats` disjoint random
samples of `-n` images, link every image to its `-k` most similar images in each
layer's feature space and measure the modularity of the class partition. The
model comes from `--checkpoint` or, without it, from the model store (trained on
demand from --recipe/--epochs/--width/--seed). Prints the curve and writes it
(values, mean, std and metadata) as JSON.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``curve`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "curve", help="modularity curve of a trained model", description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument("--arch", required=True, help="architecture name (modgraph.models.list_models())")
    model.add_argument("--dataset", required=True, help="data set name (modgraph.data.DATASETS); sets the classes")
    source = model.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path,
                        help="weights file: {'state_dict': ..., 'spec': ...} as the store saves it, or a bare "
                             "state dict; loaded with torch.load(weights_only=True). Default: use the store")
    source.add_argument("--recipe", help="training recipe of the stored model (modgraph.train.RECIPES); "
                                         "default: the store's")
    model.add_argument("--epochs", type=int, help="training epochs of the stored model; default: the recipe's")
    model.add_argument("--width", type=float,
                       help="channel width multiplier; default: 1 for the store, the one --checkpoint records")
    model.add_argument("--seed", type=int, help="training seed of the stored model; default: the store's")
    curve = parser.add_argument_group("curve")
    curve.add_argument("-n", type=int, default=500, help="images per repeat")
    curve.add_argument("-k", type=int, default=3, help="neighbours per image in the k-NN graph")
    curve.add_argument("--repeats", type=int, default=5, help="disjoint random samples of n images")
    curve.add_argument("--sample-seed", type=int, default=0, help="seed drawing the samples")
    curve.add_argument("--similarity", default="cosine", choices=SIMILARITIES.names(),
                       help="similarity of feature vectors")
    curve.add_argument("--tap", default="block",
                       help="where a layer is read: block (the paper: unit / residual block output) or conv "
                            "(the authors' code: convolution output before batch norm)")
    curve.add_argument("--split", default="test", choices=("train", "test"), help="data split to sample from")
    runtime = parser.add_argument_group("run")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N; "
                                                          "also where the store trains a missing model")
    runtime.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    runtime.add_argument("--out", type=Path,
                     help="JSON file to write; default: results/curves/<arch>_<dataset>_<settings>.json")
    runtime.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_curve)
    return parser


def run_curve(args: argparse.Namespace) -> int:
    """Compute, print and save the curve ``args`` describe; every cheap check comes before any model work."""
    from modgraph.curve import modularity_curve
    from modgraph.data import load_dataset, sample_indices
    from modgraph.devices import resolve_device

    _check(args)
    device = resolve_device(args.device)
    out = args.out or paths.results_dir() / "curves" / f"{_stem(args)}.json"
    provenance.check_writable(out)
    data = load_dataset(args.dataset, args.split, progress=not args.quiet)
    sample_indices(len(data), args.n, args.repeats, args.sample_seed)
    model, source = _checkpoint_model(args, data, device) if args.checkpoint else _stored_model(args, device)
    images, labels = data.tensors()
    meta = {"model": args.arch, "arch": args.arch, "dataset": args.dataset, "split": args.split, **source}
    curve = modularity_curve(
        model, images, labels, n=args.n, k=args.k, repeats=args.repeats, seed=args.sample_seed,
        similarity=args.similarity, tap=args.tap, batch_size=args.batch_size, device=device, meta=meta,
        progress=not args.quiet,
    )
    curve.to_json(out)
    print(curve.table())
    print(f"wrote {out}")
    return 0


def _check(args: argparse.Namespace) -> None:
    """Reject inconsistent options before anything is loaded."""
    from modgraph.models import MODELS
    from modgraph.models.taps import TAPS

    minimums = (("-n", "n", 2), ("-k", "k", 1), ("--repeats", "repeats", 1), ("--batch-size", "batch_size", 1))
    for flag, name, low in minimums:
        if getattr(args, name) < low:
            raise ValueError(f"{flag} must be >= {low}, got {getattr(args, name)}")
    if args.k >= args.n:
        raise ValueError(f"-k must be smaller than -n (each image needs k other images), got k={args.k}, n={args.n}")
    if args.width is not None and not args.width > 0:
        raise ValueError(f"--width must be > 0, got {args.width}")
    MODELS.get(args.arch)
    TAPS.get(args.tap)
    if args.checkpoint is not None:
        stray = [f"--{name}" for name in ("epochs", "seed") if getattr(args, name) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} describe a stored model and do not apply with --checkpoint")


def _checkpoint_model(args: argparse.Namespace, data: Any, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The ``--checkpoint`` model, checked against ``--arch``, ``--dataset`` and ``--width``, and its provenance."""
    from modgraph.store import checkpoint_info, load_checkpoint

    model = load_checkpoint(args.checkpoint, args.arch, dataset=args.dataset, num_classes=data.num_classes,
                            width=args.width, device=device)
    info = checkpoint_info(args.checkpoint)
    source: dict[str, Any] = {"checkpoint": str(args.checkpoint), "width": info["width"] or args.width or 1.0}
    if info["spec"] is not None:
        source["spec"] = info["spec"]
    return model, source


def _stored_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The store's model for the options, trained if it is not stored yet, and its spec."""
    from modgraph.store import ModelSpec, get_model

    given = {name: getattr(args, name) for name in ("recipe", "epochs", "seed") if getattr(args, name) is not None}
    spec = ModelSpec(arch=args.arch, dataset=args.dataset, width=args.width or 1.0, **given)
    stored = get_model(spec, device=device, progress=not args.quiet)
    return stored.model, {"width": spec.width, "spec": dataclasses.asdict(spec)}


def _stem(args: argparse.Namespace) -> str:
    """File name stem of the default output: model source and curve settings."""
    if args.checkpoint:
        source = args.checkpoint.stem
    else:
        given = [f"{name}{getattr(args, name)}" for name in ("recipe", "epochs", "seed")
                 if getattr(args, name) is not None]
        source = "-".join([f"w{args.width or 1.0:g}", *given])
    return (f"{args.arch}_{args.dataset}_{source}_{args.split}_n{args.n}_k{args.k}_r{args.repeats}"
            f"_s{args.sample_seed}_{args.similarity}_{args.tap}")
